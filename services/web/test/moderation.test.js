import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Strophe } from 'strophe.js';

import { Moderation } from '../src/moderation.js';
import { xml } from './fixtures.js';

const ROOM = 'standup@muc.meet.jitsi';
const FOCUS = `${ROOM}/focus`;

/** The XMPP connection as Moderation uses it: handlers by stanza name/type/child namespace. */
class Connection {
  constructor() {
    this.handlers = [];
    this.sent = [];
    this.iqs = [];
  }

  addHandler(fn, ns, name, type) {
    const h = { fn, ns, name, type };
    this.handlers.push(h);
    return h;
  }

  deleteHandler(h) {
    this.handlers = this.handlers.filter((x) => x !== h);
  }

  send(el) {
    this.sent.push(Strophe.serialize(el));
  }

  sendIQ(el, ok) {
    this.iqs.push(Strophe.serialize(el));
    ok(null);
  }

  receive(text) {
    const el = xml(text);
    for (const h of [...this.handlers]) {
      if (h.name && h.name !== el.localName) continue;
      if (h.type && h.type !== el.getAttribute('type')) continue;
      if (h.ns && ![...el.children].some((c) => c.namespaceURI === h.ns)) continue;
      h.fn(el);
    }
  }
}

function moderation() {
  const conn = new Connection();
  const meeting = {
    conn,
    roomJid: ROOM,
    endpointId: 'me',
    config: { hosts: { focus: 'focus.meet.jitsi', domain: 'meet.jitsi' } },
    roster: { people: new Map() },
    setAudioMuted(v) { this.audioMuted = v; },
    setVideoMuted(v) { this.videoMuted = v; },
  };
  const m = new Moderation(meeting);
  const events = [];
  for (const type of ['av-moderation', 'approved', 'rejected', 'muted']) m.addEventListener(type, (e) => events.push([type, e.detail]));
  return { m, conn, meeting, events };
}

const focusPresence = (audio, video = 'false') => `<presence xmlns='jabber:client' from='${FOCUS}' to='me@meet.jitsi/r'>`
  + `<x xmlns='http://jabber.org/protocol/muc#user'><item role='moderator' affiliation='owner'/></x>`
  + `<av-moderation xmlns='http://jitsi.org/jitmeet/av-moderation' audio='${audio}' video='${video}'/></presence>`;
const approval = (from, body) => `<message xmlns='jabber:client' type='chat' from='${from}' to='me@meet.jitsi/r'>`
  + `<json-message xmlns='http://jitsi.org/jitmeet'>${JSON.stringify(body)}</json-message></message>`;
const muteIq = (from) => `<iq xmlns='jabber:client' type='set' id='m1' from='${from}' to='me@meet.jitsi/r'>`
  + `<mute xmlns='http://jitsi.org/jitmeet/audio' actor='${ROOM}/mod'>true</mute></iq>`;

describe('AV moderation in the client', () => {
  it('reads the state from the focus presence and locks the microphone until approved', () => {
    const { m, conn, meeting, events } = moderation();
    conn.receive(focusPresence('true'));
    assert.deepEqual(m.avModeration, { audio: true, video: false });
    assert.deepEqual(events[0], ['av-moderation', { kind: 'audio', enabled: true }]);
    conn.receive(muteIq(FOCUS));
    assert.equal(meeting.audioMuted, true);
    assert.equal(m.locked('audio'), true);
    assert.equal(m.locked('video'), false);
    conn.receive(approval(FOCUS, { type: 'av_moderation', approved: true, kind: 'audio', room: ROOM }));
    assert.equal(m.approved.audio, true);
    assert.equal(m.locked('audio'), false);
    conn.receive(approval(FOCUS, { type: 'av_moderation', removed: true, kind: 'audio', room: ROOM }));
    assert.equal(m.locked('audio'), true);
    // moderation off and on again: a new round, the old approval is gone
    conn.receive(approval(FOCUS, { type: 'av_moderation', approved: true, kind: 'audio' }));
    conn.receive(focusPresence('false'));
    conn.receive(focusPresence('true'));
    assert.equal(m.approved.audio, false);
  });

  it('trusts approvals and mutes only from the focus occupant', () => {
    const { m, conn, meeting } = moderation();
    conn.receive(focusPresence('true'));
    conn.receive(muteIq(`${ROOM}/troll`));
    assert.equal(meeting.audioMuted, undefined);
    assert.match(conn.sent.at(-1), /type="error"/);
    conn.receive(muteIq(FOCUS));
    conn.receive(approval(`${ROOM}/troll`, { type: 'av_moderation', approved: true, kind: 'audio' }));
    conn.receive(approval(FOCUS, { type: 'av_moderation', approved: true, kind: 'smell' }));
    conn.receive(`<message xmlns='jabber:client' type='chat' from='${FOCUS}'><json-message xmlns='http://jitsi.org/jitmeet'>{nope</json-message></message>`);
    assert.equal(m.approved.audio, false);
    assert.equal(m.locked('audio'), true);
    // a presence from someone else carrying the element changes nothing
    conn.receive(focusPresence('false').replace(FOCUS, `${ROOM}/troll`));
    assert.equal(m.avModeration.audio, true);
  });

  it('sends Jitsi\'s av_moderation messages to the focus', async () => {
    const { m, conn } = moderation();
    await m.setAvModeration('audio', true);
    await m.approve('bob', 'audio');
    await m.reject('bob', 'video');
    const bodies = conn.iqs.map((iq) => {
      assert.match(iq, /to="focus.meet.jitsi"/);
      return JSON.parse(iq.match(/<json-message xmlns="http:\/\/jitsi.org\/jitmeet">(.*)<\/json-message>/)[1].replaceAll('&quot;', '"'));
    });
    assert.deepEqual(bodies, [
      { type: 'av_moderation', room: ROOM, kind: 'audio', enable: true },
      { type: 'av_moderation', room: ROOM, kind: 'audio', jidToWhitelist: `${ROOM}/bob` },
      { type: 'av_moderation', room: ROOM, kind: 'video', jidToBlacklist: `${ROOM}/bob` },
    ]);
  });
});
