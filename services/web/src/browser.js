// Which browser the page runs in, as far as media negotiation cares (the only place that looks at
// the user agent). Chromium (Chrome, Edge, Opera…) simulcasts with SSRC-signalled layers
// (`a=ssrc-group:SIM`, a munged answer); Firefox and Safari with RIDs (`a=rid` + `a=simulcast`,
// RFC 8853), the standard way, which Chromium's answerer side cannot do for the bridge.

/**
 * @param {string} userAgent navigator.userAgent
 * @returns {{name: 'chromium'|'firefox'|'safari'|'other', simulcast: 'ssrc'|'rid'}}
 */
export function detectBrowser(userAgent = globalThis.navigator?.userAgent ?? '') {
  const ua = String(userAgent);
  if (/Firefox\/\d+/.test(ua) && !/Seamonkey/i.test(ua)) return { name: 'firefox', simulcast: 'rid' };
  if (/Chrom(e|ium)\/\d+|CriOS\/\d+|Edg\/\d+/.test(ua)) return { name: 'chromium', simulcast: 'ssrc' };
  if (/Version\/\d+.*Safari\/\d+/.test(ua) || /AppleWebKit\/\d+/.test(ua)) return { name: 'safari', simulcast: 'rid' };
  return { name: 'other', simulcast: 'ssrc' };
}
