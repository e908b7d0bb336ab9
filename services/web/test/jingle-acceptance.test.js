import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { bareJid, JingleGate, RateLimitedLog } from '../src/signalling/acceptance.js';
import { parseJingle } from '../src/signalling/jingle.js';
import { SESSION_INITIATE } from './fixtures-xml.js';
import { xml } from './fixtures.js';

const ROOM = 'standup@muc.meet.jitsi';
const gate = new JingleGate({ roomJid: ROOM, focusNick: 'focus', focusUserJid: 'focus@auth.meet.jitsi' });
const FOCUS = `${ROOM}/focus`;
const SESSION = { sid: '6d4k2j', from: FOCUS };

describe('Jingle is accepted from the focus only, for our session only', () => {
  it('takes a session-initiate from the room\'s focus occupant', () => {
    assert.equal(gate.check({ from: FOCUS, action: 'session-initiate', sid: 'new' }, null), null);
    // a re-invite (bridge move, ICE restart) replaces the session
    assert.equal(gate.check({ from: FOCUS, action: 'session-initiate', sid: 'other' }, SESSION), null);
  });

  it('takes the focus account addressing us directly', () => {
    assert.equal(gate.check({ from: 'focus@auth.meet.jitsi/focus', action: 'session-initiate', sid: 'x' }, null), null);
    assert.equal(gate.check({ from: 'Focus@Auth.Meet.Jitsi/focus', action: 'session-initiate', sid: 'x' }, null), null);
  });

  it('refuses a forged session-initiate from another occupant with service-unavailable', () => {
    const verdict = gate.check({ from: `${ROOM}/a77ac3e5`, action: 'session-initiate', sid: 'evil' }, SESSION);
    assert.equal(verdict.condition, 'service-unavailable');
    assert.equal(verdict.type, 'cancel');
  });

  it('refuses every other sender that only looks like the focus', () => {
    for (const from of [
      'focus@auth.meet.jitsi', // bare: a server or a forged stamp, never the focus's session
      `${ROOM}/focus2`, `${ROOM}/Focus`, `${ROOM}/focus/x`, 'other@muc.meet.jitsi/focus',
      'focus@meet.jitsi/focus', 'guest@meet.jitsi/abc', 'focus.meet.jitsi', ROOM, '', null, undefined,
    ]) {
      assert.notEqual(gate.check({ from, action: 'session-initiate', sid: 's' }, null), null, String(from));
    }
  });

  it('refuses a focus action for another session id with item-not-found + unknown-session', () => {
    for (const action of ['source-add', 'source-remove', 'transport-info', 'session-terminate']) {
      const verdict = gate.check({ from: FOCUS, action, sid: 'stale' }, SESSION);
      assert.equal(verdict.condition, 'item-not-found', action);
      assert.equal(verdict.jingleCondition, 'unknown-session', action);
      assert.equal(gate.check({ from: FOCUS, action, sid: '6d4k2j' }, SESSION), null, action);
      assert.notEqual(gate.check({ from: FOCUS, action, sid: '6d4k2j' }, null), null, action);
      assert.notEqual(gate.check({ from: FOCUS, action, sid: undefined }, SESSION), null, action);
    }
  });

  it('refuses a non-focus session-terminate for our own session id', () => {
    const verdict = gate.check({ from: `${ROOM}/a77ac3e5`, action: 'session-terminate', sid: '6d4k2j' }, SESSION);
    assert.equal(verdict.condition, 'service-unavailable');
  });

  it('reads sender, action and sid from a real offer stanza', () => {
    const iq = xml(SESSION_INITIATE);
    const jingle = parseJingle(iq);
    const from = iq.getAttribute('from');
    assert.equal(gate.check({ from, action: jingle.action, sid: jingle.sid }, null), null);
    const forged = xml(SESSION_INITIATE.replace(`from='${ROOM}/focus'`, `from='${ROOM}/attacker'`));
    const j2 = parseJingle(forged);
    assert.equal(gate.check({ from: forged.getAttribute('from'), action: j2.action, sid: j2.sid }, null).condition, 'service-unavailable');
  });

  it('bareJid strips the resource and lower-cases', () => {
    assert.equal(bareJid('A@B/C/d'), 'a@b');
    assert.equal(bareJid('a@b'), 'a@b');
    assert.equal(bareJid(undefined), '');
  });
});

describe('rate-limited log', () => {
  it('writes one line per key and interval, then counts what it skipped', () => {
    let t = 0;
    const lines = [];
    const log = new RateLimitedLog((m) => lines.push(m), 1000, () => t);
    for (let i = 0; i < 50; i++) log.warn('k', 'refused');
    assert.deepEqual(lines, ['refused']);
    t = 1500;
    log.warn('k', 'refused');
    assert.deepEqual(lines, ['refused', 'refused (and 49 more like it)']);
  });

  it('stays bounded whatever the keys', () => {
    const log = new RateLimitedLog(() => {}, 1000, () => 0);
    for (let i = 0; i < 10000; i++) log.warn(`k${i}`, 'x');
    assert.ok(log.last.size <= 256);
    assert.ok(log.suppressed.size <= 256);
  });
});
