// Who may drive this page's media session. Only the focus (Jicofo's role) offers, changes and
// ends the call, as lib-jitsi-meet's Jingle plugin insists: any other occupant of the room (or
// anyone else on the XMPP server) could otherwise send a forged session-initiate with its own
// candidates, DTLS fingerprint and bridge-channel URL and take the camera and microphone. And a
// Jingle action other than session-initiate must name the session we are in (XEP-0166 section 7.2).
// Pure: the page answers the verdict with an error IQ and ignores the stanza.

export const NS_JINGLE_ERRORS = 'urn:xmpp:jingle:errors:1';

/** `user@host/res` -> `user@host` (lower-cased: JIDs compare case-insensitively before the resource). */
export function bareJid(jid) {
  const s = String(jid ?? '');
  const slash = s.indexOf('/');
  return (slash >= 0 ? s.slice(0, slash) : s).toLowerCase();
}

function sameFullJid(a, b) {
  const sa = String(a ?? '');
  const sb = String(b ?? '');
  const ra = sa.indexOf('/');
  const rb = sb.indexOf('/');
  if (ra < 0 || rb < 0) return false;
  return bareJid(sa) === bareJid(sb) && sa.slice(ra + 1) === sb.slice(rb + 1);
}

export class JingleGate {
  /**
   * @param {{roomJid: string, focusNick?: string, focusUserJid?: string}} options
   *   the room we are in, the focus's nick in it (its occupant sends us Jingle through the MUC),
   *   the focus's own account (when it addresses us directly).
   */
  constructor({ roomJid, focusNick = 'focus', focusUserJid }) {
    this.focusOccupant = `${roomJid}/${focusNick}`;
    this.focusUser = focusUserJid ? bareJid(focusUserJid) : null;
  }

  /** Is `from` the focus: the room's focus occupant, or the focus's own account? */
  isFocus(from) {
    if (!from) return false;
    if (sameFullJid(from, this.focusOccupant)) return true;
    return !!this.focusUser && String(from).includes('/') && bareJid(from) === this.focusUser;
  }

  /**
   * The verdict on a Jingle IQ `{from, action, sid}` while `session` ({sid, from} or null) is
   * ours: null to accept it, or the error to answer with: {type, condition, jingleCondition?, text}.
   */
  check({ from, action, sid }, session) {
    if (!this.isFocus(from)) {
      // XEP-0166 section 5.3: a party we do not deal with gets service-unavailable
      return { type: 'cancel', condition: 'service-unavailable', text: 'Jingle is accepted from the focus only' };
    }
    if (action === 'session-initiate') return null;
    if (!session || !sid || sid !== session.sid) {
      return {
        type: 'cancel', condition: 'item-not-found', jingleCondition: 'unknown-session',
        text: `no session ${sid ?? ''}`.trim(),
      };
    }
    return null;
  }
}

/** Calls `log` at most once per `intervalMs` per key (a flood of forged stanzas writes one line). */
export class RateLimitedLog {
  constructor(log, intervalMs = 10000, now = () => Date.now()) {
    this.log = log;
    this.intervalMs = intervalMs;
    this.now = now;
    this.last = new Map();
    this.suppressed = new Map();
  }

  warn(key, message) {
    const t = this.now();
    const last = this.last.get(key);
    if (last !== undefined && t - last < this.intervalMs) {
      this.suppressed.set(key, (this.suppressed.get(key) ?? 0) + 1);
      return false;
    }
    if (this.last.size >= 256 && !this.last.has(key)) {
      this.last.clear(); // bounded, whatever the keys
      this.suppressed.clear();
    }
    const skipped = this.suppressed.get(key) ?? 0;
    this.suppressed.delete(key);
    this.last.set(key, t);
    this.log(skipped ? `${message} (and ${skipped} more like it)` : message);
    return true;
  }
}
