import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { $iq, $pres, Strophe } from 'strophe.js';

import { encodingForConstraint, qualityLevel, summarizeStats } from '../src/quality.js';
import { Roster } from '../src/roster.js';
import {
  appendConferenceRequest, appendPresence, parseConferenceResult, parsePresence,
} from '../src/signalling/muc.js';
import { xml } from './fixtures.js';

const FOCUS_USER = 'focus@auth.meet.jitsi';
const presence = (s) => parsePresence(xml(s), { focusUser: FOCUS_USER });

describe('focus conference request', () => {
  it('asks the focus for the room and reads ready', () => {
    const iq = $iq({ to: 'focus.meet.jitsi', type: 'set' });
    appendConferenceRequest(iq, { roomJid: 'standup@muc.meet.jitsi', machineUid: 'm1' });
    const text = Strophe.serialize(iq.tree());
    assert.match(text, /<conference [^>]*xmlns="http:\/\/jitsi.org\/protocol\/focus"/);
    assert.match(text, /room="standup@muc.meet.jitsi"/);
    assert.match(text, /machine-uid="m1"/);
    const ok = xml("<iq xmlns='jabber:client' type='result'><conference xmlns='http://jitsi.org/protocol/focus' ready='true' focusjid='focus@auth.meet.jitsi'/></iq>");
    assert.deepEqual(parseConferenceResult(ok), { ready: true, focusJid: 'focus@auth.meet.jitsi' });
    const notYet = xml("<iq xmlns='jabber:client' type='result'><conference xmlns='http://jitsi.org/protocol/focus' ready='false'/></iq>");
    assert.equal(parseConferenceResult(notYet).ready, false);
  });
});

describe('MUC presence', () => {
  it('sends nick, muted state and stats-id, and reads them back', () => {
    const p = $pres({ to: 'standup@muc.meet.jitsi/ab12cd34' });
    appendPresence(p, { nick: 'Ada <3', audioMuted: true, videoMuted: false, statsId: 'Ada-1', join: true });
    const text = Strophe.serialize(p.tree());
    assert.match(text, /<x xmlns="http:\/\/jabber.org\/protocol\/muc"\/>/);
    assert.match(text, /<nick xmlns="http:\/\/jabber.org\/protocol\/nick">Ada &lt;3<\/nick>/);
    const back = presence(text.replace('to="standup@muc.meet.jitsi/ab12cd34"', 'from="standup@muc.meet.jitsi/ab12cd34"'));
    assert.equal(back.nick, 'Ada <3');
    assert.equal(back.audioMuted, true);
    assert.equal(back.videoMuted, false);
    assert.equal(back.endpoint, 'ab12cd34');
  });

  it('cuts a hostile nick to what a page shows', () => {
    const long = 'N'.repeat(50000);
    const back = presence(`<presence xmlns="jabber:client" from="standup@muc.meet.jitsi/ab12cd34"><nick xmlns="http://jabber.org/protocol/nick">${long}</nick></presence>`);
    assert.equal(back.nick.length, 100);
  });

  it('recognizes the focus, our own presence, leaving and errors', () => {
    const focus = presence(`<presence xmlns='jabber:client' from='r@muc.meet.jitsi/focus'>
      <x xmlns='http://jabber.org/protocol/muc#user'><item jid='focus@auth.meet.jitsi/focus' role='moderator'/></x></presence>`);
    assert.equal(focus.isFocus, true);
    const self = presence(`<presence xmlns='jabber:client' from='r@muc.meet.jitsi/me'>
      <x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/><status code='110'/></x></presence>`);
    assert.equal(self.isSelf, true);
    const gone = presence("<presence xmlns='jabber:client' type='unavailable' from='r@muc.meet.jitsi/b0b'/>");
    assert.equal(gone.unavailable, true);
    const refused = presence(`<presence xmlns='jabber:client' type='error' from='r@muc.meet.jitsi/me'>
      <error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>`);
    assert.equal(refused.error, 'not-allowed');
  });

  it('reads the server\'s muc#user payload, not an occupant\'s forged one before it', () => {
    const forged = presence(`<presence xmlns='jabber:client' from='r@muc.meet.jitsi/mallory'>
      <x xmlns='http://jabber.org/protocol/muc#user'><item jid='focus@auth.meet.jitsi/focus'/><status code='110'/></x>
      <x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/></x></presence>`);
    assert.equal(forged.isFocus, false);
    assert.equal(forged.isSelf, false);
    assert.equal(forged.realJid, undefined);
  });
});

describe('Roster', () => {
  const occupant = (endpoint, extra = {}) => ({
    endpoint, nick: endpoint.toUpperCase(), audioMuted: false, videoMuted: false, unavailable: false,
    isSelf: false, isFocus: false, ...extra,
  });

  it('tracks people joining, muting and leaving, ignoring ourselves and the focus', () => {
    const r = new Roster('me');
    const events = [];
    r.onChange((kind, ep) => events.push(`${kind}:${ep}`));
    r.applyPresence(occupant('me'));
    r.applyPresence(occupant('focus', { isFocus: true }));
    r.applyPresence(occupant('ada'));
    r.applyPresence(occupant('ada'));
    r.applyPresence(occupant('ada', { audioMuted: true }));
    assert.equal(r.people.get('ada').audioMuted, true);
    r.applyPresence(occupant('ada', { unavailable: true }));
    assert.equal(r.size, 0);
    assert.deepEqual(events, ['joined:ada', 'updated:ada', 'left:ada']);
  });

  it('attaches tracks, even before the presence, and follows the dominant speaker', () => {
    const r = new Roster('me');
    const events = [];
    r.onChange((kind, ep) => events.push(`${kind}:${ep}`));
    r.addTrack('bob', 'video', { id: 't1' });
    r.applyPresence(occupant('bob'));
    assert.equal(r.people.get('bob').nick, 'BOB');
    r.setDominantSpeaker('bob');
    r.setDominantSpeaker('bob');
    r.applyPresence(occupant('cy'));
    r.setDominantSpeaker('cy');
    assert.equal(r.dominant, 'cy');
    r.removeTrack('bob', 'video');
    assert.equal(r.people.get('bob').tracks.size, 0);
    assert.deepEqual(events, ['joined:bob', 'track:bob', 'updated:bob', 'speaker:bob', 'joined:cy', 'speaker:bob', 'speaker:cy', 'track:bob']);
  });

  it('follows ForwardedSources: video counts as forwarded until the bridge says otherwise', () => {
    const r = new Roster('me');
    r.applyPresence(occupant('ada'));
    r.applyPresence(occupant('bob'));
    r.addTrack('bob', 'video', { id: 't2' }, 'bob-camera');
    assert.equal(r.videoSourceOf('ada'), 'ada-v0');
    assert.equal(r.videoSourceOf('bob'), 'bob-camera');
    assert.ok(r.isForwarded('ada') && r.isForwarded('bob'));
    const events = [];
    r.onChange((kind, ep) => events.push(`${kind}:${ep}`));
    r.setForwarded(['bob-camera']);
    assert.ok(!r.isForwarded('ada'));
    assert.ok(r.isForwarded('bob'));
    r.setForwarded(['bob-camera']);
    r.setForwarded(['ada-v0']);
    r.setForwarded(null);
    assert.ok(r.isForwarded('ada') && r.isForwarded('bob'));
    assert.deepEqual(events, ['updated:ada', 'updated:ada', 'updated:bob', 'updated:bob']);
  });
});

describe('connection quality', () => {
  it('grades rtt, loss and bandwidth', () => {
    assert.equal(qualityLevel({ connected: false }), 'poor');
    assert.equal(qualityLevel({ connected: true }), 'unknown');
    assert.equal(qualityLevel({ connected: true, rttMs: 20, lossRatio: 0 }), 'good');
    assert.equal(qualityLevel({ connected: true, rttMs: 200, lossRatio: 0 }), 'fair');
    assert.equal(qualityLevel({ connected: true, rttMs: 20, lossRatio: 0.1 }), 'poor');
    assert.equal(qualityLevel({ connected: true, rttMs: 20, downlinkBps: 400_000 }), 'good');
    assert.equal(qualityLevel({ connected: true, rttMs: 20, downlinkBps: 100_000 }), 'fair');
    assert.equal(qualityLevel({ connected: true, rttMs: 20, downlinkBps: 50_000 }), 'poor');
  });

  it('measures loss over the interval since the last sample', () => {
    const first = summarizeStats([
      { type: 'candidate-pair', nominated: true, currentRoundTripTime: 0.012 },
      { type: 'inbound-rtp', kind: 'video', packetsLost: 10, packetsReceived: 990, framesDecoded: 30 },
    ]);
    assert.equal(first.rttMs, 12);
    assert.equal(first.lossRatio, 0.01);
    assert.equal(first.framesDecoded, 30);
    const second = summarizeStats([
      { type: 'inbound-rtp', kind: 'audio', packetsLost: 10, packetsReceived: 1990 },
    ], first.counters);
    assert.equal(second.lossRatio, 0);
  });
});

describe('sender constraints', () => {
  it('pauses, scales down or leaves the camera encoding alone', () => {
    assert.deepEqual(encodingForConstraint(0, 720), { active: false, scaleResolutionDownBy: 1 });
    assert.deepEqual(encodingForConstraint(-1, 720), { active: true, scaleResolutionDownBy: 1 });
    assert.deepEqual(encodingForConstraint(180, 720), { active: true, scaleResolutionDownBy: 4 });
    assert.deepEqual(encodingForConstraint(1080, 720), { active: true, scaleResolutionDownBy: 1 });
    assert.deepEqual(encodingForConstraint(360, undefined), { active: true, scaleResolutionDownBy: 1 });
  });
});
