// Small DOM helpers that work on the browser's DOM and on @xmldom/xmldom (unit tests) alike.

/** Child elements of `el` with the given local name (and namespace, when given). */
export function children(el, localName, ns) {
  const out = [];
  if (!el) return out;
  for (let node = el.firstChild; node; node = node.nextSibling) {
    if (node.nodeType !== 1) continue;
    if (localName && node.localName !== localName) continue;
    if (ns && node.namespaceURI !== ns) continue;
    out.push(node);
  }
  return out;
}

/** The first child element matching, or null. */
export function child(el, localName, ns) {
  return children(el, localName, ns)[0] ?? null;
}

/** An attribute's value, or `fallback` when absent or empty. */
export function attr(el, name, fallback = undefined) {
  const value = el?.getAttribute(name);
  return value === null || value === undefined || value === '' ? fallback : value;
}

/** An integer attribute; throws a JingleError naming the attribute when malformed. */
export function intAttr(el, name, fallback = undefined) {
  const raw = attr(el, name);
  if (raw === undefined) {
    if (fallback === undefined) throw new JingleError(`<${el.localName}> lacks attribute '${name}'`);
    return fallback;
  }
  if (!/^-?\d+$/.test(raw)) throw new JingleError(`<${el.localName} ${name}='${raw}'> is not an integer`);
  return Number(raw);
}

export function text(el) {
  return (el?.textContent ?? '').trim();
}

/** A signalling message the client cannot make sense of. */
export class JingleError extends Error {
  constructor(message) {
    super(message);
    this.name = 'JingleError';
  }
}
