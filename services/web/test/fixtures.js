// Node-side fixtures: the stanzas of fixtures-xml.js plus an XML parser (@xmldom/xmldom).

import { DOMParser } from '@xmldom/xmldom';

export * from './fixtures-xml.js';

export function xml(text) {
  return new DOMParser().parseFromString(text, 'text/xml').documentElement;
}
