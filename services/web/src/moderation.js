// Moderation of a meeting over XMPP, as Jitsi clients do it (docs/authentication.md): roles from
// the room's presences, moderator actions as XEP-0045 admin/owner IQs (kick = role none, make
// moderator = affiliation owner, password and lobby in the room's configuration form), mutes as
// Jitsi's mute IQs to the focus (which has the bridge drop the media), the lobby's knockers, and
// AV moderation (Jitsi's `av_moderation` JSON messages, sent to the focus: on/off per kind, approve
// or reject a participant; its state in the focus's presence, approvals as private messages from
// the focus's occupant; lib-jitsi-meet's AVModeration). No DOM: the page renders the events (moderation-ui.js).

import { $iq, $pres } from 'strophe.js';
import { MAX_DISPLAY_NAME } from './bridge-channel.js';

export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
const NS_DATA = 'jabber:x:data';
const NS_NICK = 'http://jabber.org/protocol/nick';
const NS_JITMEET = 'http://jitsi.org/jitmeet';
const NS_AV_MODERATION = 'http://jitsi.org/jitmeet/av-moderation';
export const KINDS = ['audio', 'video'];
export const MUTE = {
  audio: { ns: 'http://jitsi.org/jitmeet/audio', name: 'mute' },
  video: { ns: 'http://jitsi.org/jitmeet/video', name: 'mute-video' },
};

/** The server's muc#user item of a presence: {role, affiliation, jid, codes}. */
export function mucUser(el) {
  const xs = [...el.children].filter((c) => c.localName === 'x' && c.namespaceURI === NS_MUC_USER);
  const x = xs.at(-1);
  if (!x) return null;
  const item = [...x.children].find((c) => c.localName === 'item');
  const codes = [...x.children].filter((c) => c.localName === 'status').map((c) => c.getAttribute('code'));
  const actor = item ? [...item.children].find((c) => c.localName === 'actor')?.getAttribute('nick') : undefined;
  return {
    role: item?.getAttribute('role') ?? 'none',
    affiliation: item?.getAttribute('affiliation') ?? 'none',
    jid: item?.getAttribute('jid') ?? undefined,
    actor,
    codes,
  };
}

/** The error condition and text of an IQ error. */
export function errorOf(el) {
  const error = el ? [...el.children].find((c) => c.localName === 'error') : null;
  if (!error) return { condition: 'timeout', text: 'no answer' };
  const condition = [...error.children].find((c) => c.localName !== 'text')?.localName ?? 'error';
  const text = [...error.children].find((c) => c.localName === 'text')?.textContent ?? '';
  return { condition, text };
}

export class Moderation extends EventTarget {
  constructor(meeting) {
    super();
    this.meeting = meeting;
    this.conn = meeting.conn;
    this.roomJid = meeting.roomJid;
    const { hosts, focusNick } = meeting.config;
    this.focus = hosts.focus;
    this.focusOccupant = `${this.roomJid}/${focusNick ?? 'focus'}`;
    this.lobbyJid = `${this.roomJid.split('@')[0]}@${hosts.lobby ?? `lobby.${hosts.domain}`}`;
    this.self = meeting.endpointId;
    this.role = 'participant';
    this.members = new Map(); // nick -> {role, affiliation, jid}
    this.forceMuted = { audio: false, video: false };
    this.knockers = new Map(); // nick -> {name, jid}
    this.watchingLobby = false;
    this.avModeration = { audio: false, video: false }; // kinds under AV moderation (the focus's presence)
    this.approved = { audio: false, video: false }; // a moderator let us unmute that kind
    this.handlers = [
      this.conn.addHandler((el) => this.#focusMessage(el), null, 'message', 'chat'),
      this.conn.addHandler((el) => this.#presence(el), null, 'presence'),
      this.conn.addHandler((iq) => this.#muteIq(iq, 'audio'), MUTE.audio.ns, 'iq', 'set'),
      this.conn.addHandler((iq) => this.#muteIq(iq, 'video'), MUTE.video.ns, 'iq', 'set'),
    ];
  }

  #emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get isModerator() {
    return this.role === 'moderator';
  }

  close() {
    for (const h of this.handlers) this.conn.deleteHandler(h);
    this.handlers = [];
  }

  // --------------------------------------------------------------------------------- inbound

  #presence(el) {
    const from = el.getAttribute('from') ?? '';
    if (from.startsWith(`${this.lobbyJid}/`)) return this.#lobbyPresence(el, from.slice(this.lobbyJid.length + 1));
    if (!from.startsWith(`${this.roomJid}/`) || el.getAttribute('type') === 'error') return true;
    const nick = from.slice(this.roomJid.length + 1);
    if (from === this.focusOccupant) this.#focusPresence(el);
    const user = mucUser(el);
    if (!user) return true;
    const gone = el.getAttribute('type') === 'unavailable';
    if (nick === this.self) {
      const was = this.role;
      this.role = gone ? 'none' : user.role;
      if (gone && user.codes.includes('307')) this.#emit('kicked', { actor: user.actor });
      if (was !== this.role) {
        this.#emit('role', { role: this.role });
        if (this.isModerator) this.watchLobby();
      }
      return true;
    }
    if (gone) this.members.delete(nick);
    else this.members.set(nick, { role: user.role, affiliation: user.affiliation, jid: user.jid });
    this.#emit('change', { nick });
    return true;
  }

  /** The focus's presence carries the AV moderation state (its <av-moderation/> element). */
  #focusPresence(el) {
    if (el.getAttribute('type') === 'unavailable') return;
    const av = [...el.children].find((c) => c.localName === 'av-moderation' && c.namespaceURI === NS_AV_MODERATION);
    const next = { audio: av?.getAttribute('audio') === 'true', video: av?.getAttribute('video') === 'true' };
    for (const kind of KINDS) {
      if (next[kind] === this.avModeration[kind]) continue;
      this.avModeration[kind] = next[kind];
      this.approved[kind] = false; // a new round of moderation: ask again
      this.#emit('av-moderation', { kind, enabled: next[kind] });
    }
  }

  /** Approved / turned down: a private message, trusted only from the focus's occupant. */
  #focusMessage(el) {
    if (el.getAttribute('from') !== this.focusOccupant) return true;
    const json = [...el.children].find((c) => c.localName === 'json-message' && c.namespaceURI === NS_JITMEET);
    if (!json) return true;
    let body;
    try {
      body = JSON.parse(json.textContent ?? '');
    } catch {
      return true;
    }
    if (body?.type !== 'av_moderation' || !KINDS.includes(body.kind)) return true;
    if (body.approved === true) {
      this.approved[body.kind] = true;
      this.#emit('approved', { kind: body.kind });
    } else if (body.removed === true) {
      this.approved[body.kind] = false;
      this.#emit('rejected', { kind: body.kind });
    }
    return true;
  }

  /** True when we may not unmute `kind`: AV moderation is on, a moderator has not let us, and
   * the focus holds our media (the bridge drops it). */
  locked(kind) {
    return !this.isModerator && this.avModeration[kind] && !this.approved[kind] && this.forceMuted[kind];
  }

  #lobbyPresence(el, nick) {
    if (nick === this.self) {
      this.watchingLobby = el.getAttribute('type') !== 'unavailable' && el.getAttribute('type') !== 'error';
      return true;
    }
    const user = mucUser(el);
    if (el.getAttribute('type') === 'unavailable') {
      if (this.knockers.delete(nick)) this.#emit('knock-left', { nick });
    } else if (user?.jid) {
      const name = ([...el.children].find((c) => c.localName === 'nick' && c.namespaceURI === NS_NICK)?.textContent ?? nick).slice(0, MAX_DISPLAY_NAME);
      this.knockers.set(nick, { name, jid: user.jid });
      this.#emit('knock', { nick, name });
    }
    return true;
  }

  #muteIq(iq, kind) {
    const from = iq.getAttribute('from');
    if (from !== this.focusOccupant) {
      this.conn.send($iq({ type: 'error', to: from, id: iq.getAttribute('id') })
        .c('error', { type: 'cancel' }).c('not-allowed', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }).tree());
      return true;
    }
    this.conn.send($iq({ type: 'result', to: from, id: iq.getAttribute('id') }).tree());
    const el = [...iq.children].find((c) => c.localName === MUTE[kind].name);
    if (el?.textContent !== 'true') return true;
    this.forceMuted[kind] = true;
    if (kind === 'audio') this.meeting.setAudioMuted(true);
    else this.meeting.setVideoMuted(true);
    const actor = (el.getAttribute('actor') ?? '').split('/').pop();
    this.#emit('muted', { kind, actor, actorName: this.meeting.roster.people.get(actor)?.nick ?? actor });
    return true;
  }

  // ---------------------------------------------------------------------------------- actions

  #send(iq) {
    return new Promise((resolve, reject) => this.conn.sendIQ(iq.tree(), resolve, (el) => {
      const { condition, text } = errorOf(el);
      reject(Object.assign(new Error(text || condition), { condition }));
    }, 10000));
  }

  #admin(to, item) {
    return this.#send($iq({ to, type: 'set' }).c('query', { xmlns: NS_MUC_ADMIN }).c('item', item));
  }

  #configure(fields) {
    const iq = $iq({ to: this.roomJid, type: 'set' }).c('query', { xmlns: NS_MUC_OWNER })
      .c('x', { xmlns: NS_DATA, type: 'submit' });
    iq.c('field', { var: 'FORM_TYPE' }).c('value').t('http://jabber.org/protocol/muc#roomconfig').up().up();
    for (const [name, value] of Object.entries(fields)) iq.c('field', { var: name }).c('value').t(value).up().up();
    return this.#send(iq);
  }

  /** Ask the focus to mute `nick` (the bridge then forwards none of its `kind`). */
  mute(nick, kind = 'audio') {
    const { ns, name } = MUTE[kind];
    return this.#send($iq({ to: this.focus, type: 'set' }).c(name, { xmlns: ns, jid: `${this.roomJid}/${nick}` }).t('true'));
  }

  muteAll(kind = 'audio') {
    const others = [...this.members.keys()].filter((n) => n !== this.self && this.focusOccupant !== `${this.roomJid}/${n}`);
    return Promise.allSettled(others.map((n) => this.mute(n, kind)));
  }

  /** After a moderator's mute: ask the focus to let our media through again (it may refuse). */
  async requestUnmute(kind = 'audio') {
    const { ns, name } = MUTE[kind];
    await this.#send($iq({ to: this.focus, type: 'set' }).c(name, { xmlns: ns, jid: `${this.roomJid}/${this.self}` }).t('false'));
    this.forceMuted[kind] = false;
  }

  #avModeration(body) {
    return this.#send($iq({ to: this.focus, type: 'set' }).c('json-message', { xmlns: NS_JITMEET })
      .t(JSON.stringify({ type: 'av_moderation', room: this.roomJid, ...body })));
  }

  /** Moderators: AV moderation of `kind` on or off (on mutes everyone but moderators). */
  setAvModeration(kind, enable) {
    return this.#avModeration({ kind, enable: !!enable });
  }

  /** Moderators: let `nick` unmute `kind`. */
  approve(nick, kind = 'audio') {
    return this.#avModeration({ kind, jidToWhitelist: `${this.roomJid}/${nick}` });
  }

  /** Moderators: turn down `nick`'s request (or withdraw its approval: muted again). */
  reject(nick, kind = 'audio') {
    return this.#avModeration({ kind, jidToBlacklist: `${this.roomJid}/${nick}` });
  }

  kick(nick, reason = '') {
    return this.#send($iq({ to: this.roomJid, type: 'set' }).c('query', { xmlns: NS_MUC_ADMIN })
      .c('item', { nick, role: 'none' }).c('reason').t(reason));
  }

  makeModerator(nick) {
    const jid = this.members.get(nick)?.jid;
    if (!jid) return Promise.reject(new Error('unknown participant'));
    return this.#admin(this.roomJid, { jid: jid.split('/')[0], affiliation: 'owner' });
  }

  setPassword(password) {
    return this.#configure({
      'muc#roomconfig_passwordprotectedroom': password ? '1' : '0',
      'muc#roomconfig_roomsecret': password,
    });
  }

  async setLobby(enabled) {
    await this.#configure({ 'muc#roomconfig_membersonly': enabled ? '1' : '0' });
    this.lobbyEnabled = enabled;
    if (enabled) this.watchLobby();
  }

  /** Moderators watch the lobby: they see who knocks (services/xmpp/modules/lobby.py). */
  watchLobby() {
    if (!this.isModerator) return;
    this.conn.send($pres({ to: `${this.lobbyJid}/${this.self}` }).tree());
  }

  admit(nick) {
    const knocker = this.knockers.get(nick);
    if (!knocker) return Promise.reject(new Error('nobody knocks with that name'));
    return this.#admin(this.roomJid, { jid: knocker.jid.split('/')[0], affiliation: 'member' });
  }

  deny(nick) {
    return this.#admin(this.lobbyJid, { nick, role: 'none' });
  }
}
