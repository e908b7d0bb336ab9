// The XMPP stanzas of a meeting besides Jingle: the conference request to the focus and MUC
// presence with Jitsi's extensions. Builders append to a Strophe builder; parsers read DOM
// elements. No I/O.

import { MAX_DISPLAY_NAME } from '../bridge-channel.js';
import { parseRaisedHand, RAISED_HAND } from '../reactions.js';
import { attr, child, children, text } from './xml.js';

export const FOCUS_NS = 'http://jitsi.org/protocol/focus';
const MUC_NS = 'http://jabber.org/protocol/muc';
const MUC_USER_NS = 'http://jabber.org/protocol/muc#user';
const NICK_NS = 'http://jabber.org/protocol/nick';

/** `<conference>` IQ payload asking the focus for `roomJid`. */
export function appendConferenceRequest(builder, { roomJid, machineUid }) {
  builder.c('conference', { xmlns: FOCUS_NS, room: roomJid, 'machine-uid': machineUid });
  builder.c('property', { name: 'startAudioMuted', value: 'false' }).up();
  builder.c('property', { name: 'startVideoMuted', value: 'false' }).up();
  builder.up();
  return builder;
}

/** The focus's answer: {ready, focusJid}. */
export function parseConferenceResult(iq) {
  const conf = child(iq, 'conference', FOCUS_NS);
  return { ready: attr(conf, 'ready') === 'true', focusJid: attr(conf, 'focusjid') };
}

/** MUC join/update presence with the extensions Jitsi clients send. */
export function appendPresence(builder, { nick, audioMuted, videoMuted, statsId, join = false, raisedHand = null, sourceInfo = null }) {
  if (join) builder.c('x', { xmlns: MUC_NS }).up();
  builder.c('nick', { xmlns: NICK_NS }).t(nick).up();
  builder.c('audiomuted').t(String(!!audioMuted)).up();
  builder.c('videomuted').t(String(!!videoMuted)).up();
  if (statsId) builder.c('stats-id').t(statsId).up();
  // Jitsi Meet: the time the hand went up; no element while it is down
  if (raisedHand) builder.c(RAISED_HAND).t(String(raisedHand)).up();
  // Jitsi's per-source mute state and video type (lib-jitsi-meet reads it for remote tracks)
  if (sourceInfo) builder.c('SourceInfo').t(JSON.stringify(sourceInfo)).up();
  return builder;
}

/**
 * An occupant presence: {endpoint, nick, audioMuted, videoMuted, unavailable, isSelf, isFocus,
 * error, realJid}. `focusUser` is the bare JID the focus logs in with (focus@auth.<domain>).
 */
export function parsePresence(el, { focusUser } = {}) {
  const from = attr(el, 'from', '');
  const slash = from.indexOf('/');
  const endpoint = slash >= 0 ? from.slice(slash + 1) : '';
  // the server's muc#user payload is the last one (it appends it after the occupant's own); an
  // occupant's forged one, naming the focus's real JID, would come first if a server relayed it
  const x = children(el, 'x', MUC_USER_NS).at(-1) ?? null;
  const item = child(x, 'item');
  const realJid = attr(item, 'jid');
  const statuses = children(x, 'status').map((s) => attr(s, 'code'));
  const errorEl = child(el, 'error');
  const condition = errorEl ? children(errorEl).find((c) => c.localName !== 'text')?.localName : undefined;
  const bool = (name) => text(child(el, name)) === 'true';
  return {
    from,
    room: slash >= 0 ? from.slice(0, slash) : from,
    endpoint,
    nick: (text(child(el, 'nick', NICK_NS)) || endpoint).slice(0, MAX_DISPLAY_NAME),
    audioMuted: bool('audiomuted'),
    videoMuted: bool('videomuted'),
    raisedHand: parseRaisedHand(text(child(el, RAISED_HAND))),
    unavailable: attr(el, 'type') === 'unavailable',
    isSelf: statuses.includes('110'),
    isFocus: endpoint === 'focus' || (!!focusUser && !!realJid && realJid.split('/')[0] === focusUser),
    error: attr(el, 'type') === 'error' ? condition || 'error' : undefined,
    realJid,
    role: attr(item, 'role'),
    affiliation: attr(item, 'affiliation'),
  };
}
