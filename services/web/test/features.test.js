import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { $pres, Strophe } from 'strophe.js';
import sdpTransform from 'sdp-transform';

import { chooseDevice, deviceOptions, mediaConstraints } from '../src/devices.js';
import { handQueue, parseRaisedHand, ReactionLimiter, reactionMessage, reactionsFrom } from '../src/reactions.js';
import { Roster } from '../src/roster.js';
import {
  isScreenTrack, localSourceContents, SCREEN_MID, screenSourceIndex, screenSourceName, sourceVideoType, trackKind,
} from '../src/screenshare.js';
import { parseJingle } from '../src/signalling/jingle.js';
import { appendPresence, parsePresence } from '../src/signalling/muc.js';
import { RemoteOffer } from '../src/signalling/sdp.js';
import { SCREEN_STAGE_HEIGHT, stageTile, viewConstraints } from '../src/views.js';
import { ME, SESSION_INITIATE, SOURCE_ADD_BOB, xml } from './fixtures.js';

describe('screen share', () => {
  it('adds a receive-only m-line after the others for the screen, and keeps it', () => {
    const offer = new RemoteOffer(parseJingle(xml(SESSION_INITIATE)), { localOwner: ME });
    const before = sdpTransform.parse(offer.toSdp()).media.map((m) => m.mid);
    assert.equal(offer.addLocalSlot(SCREEN_MID), true);
    assert.equal(offer.addLocalSlot(SCREEN_MID), false);
    const media = sdpTransform.parse(offer.toSdp()).media;
    assert.deepEqual(media.map((m) => m.mid), [...before, SCREEN_MID]);
    const screen = media.at(-1);
    assert.equal(screen.type, 'video');
    assert.equal(screen.direction, 'recvonly');
    assert.equal(screen.ssrcs, undefined);
    assert.equal(offer.trackForMid(SCREEN_MID), undefined); // nothing is received on it
    assert.ok(!offer.activeTracks().some((t) => t.mid === SCREEN_MID));
  });

  it('announces what the browser sends on the screen m-line as the video content, typed desktop', () => {
    const answer = [
      'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0',
      'm=video 9 UDP/TLS/RTP/SAVPF 100', 'c=IN IP4 0.0.0.0', 'a=mid:video', 'a=sendonly', 'a=rtpmap:100 VP8/90000',
      'a=ssrc:11 cname:x',
      'm=video 9 UDP/TLS/RTP/SAVPF 100', 'c=IN IP4 0.0.0.0', 'a=mid:screen', 'a=sendonly', 'a=rtpmap:100 VP8/90000',
      'a=msid:s1 t1', 'a=ssrc-group:FID 21 22', 'a=ssrc:21 cname:x', 'a=ssrc:22 cname:x', '',
    ].join('\r\n');
    const contents = localSourceContents(answer, SCREEN_MID, { owner: ME, name: 'me000001-v1' });
    assert.equal(contents.length, 1);
    assert.equal(contents[0].name, 'video');
    const d = contents[0].description;
    assert.deepEqual(d.sources.map((s) => [s.ssrc, s.name, s.videoType, s.owner, s.msid]), [
      [21, 'me000001-v1', 'desktop', ME, 's1 t1'], [22, 'me000001-v1', 'desktop', ME, 's1 t1'],
    ]);
    assert.deepEqual(d.ssrcGroups, [{ semantics: 'FID', ssrcs: [21, 22] }]);
    assert.deepEqual(localSourceContents(answer, 'nope', { owner: ME, name: 'x' }), []);
    assert.deepEqual(sourceVideoType('me000001-v1', 'desktop'), { colibriClass: 'SourceVideoTypeMessage', sourceName: 'me000001-v1', videoType: 'desktop' });
  });

  it('names the screen by the video sources sent before it: -v1 beside a camera, -v0 without one', () => {
    const head = ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0'];
    const camera = (direction, ssrcs) => [
      'm=video 9 UDP/TLS/RTP/SAVPF 100', 'c=IN IP4 0.0.0.0', 'a=mid:video', `a=${direction}`, 'a=rtpmap:100 VP8/90000',
      ...ssrcs.map((s) => `a=ssrc:${s} cname:x`),
    ];
    const screen = [
      'm=video 9 UDP/TLS/RTP/SAVPF 100', 'c=IN IP4 0.0.0.0', 'a=mid:screen', 'a=sendonly', 'a=rtpmap:100 VP8/90000',
      'a=ssrc:21 cname:x',
    ];
    const sdp = (lines) => [...head, ...lines, ''].join('\r\n');
    assert.equal(screenSourceIndex(sdp([...camera('sendonly', [11, 12]), ...screen]), ['video']), 1);
    // joined without a camera: the camera m-line only receives (Firefox may still list an SSRC)
    assert.equal(screenSourceIndex(sdp([...camera('recvonly', []), ...screen]), ['video']), 0);
    assert.equal(screenSourceIndex(sdp([...camera('recvonly', [11]), ...screen]), ['video']), 0);
    assert.equal(screenSourceIndex(sdp([...camera('inactive', []), ...screen]), ['video']), 0);
    // no answer yet: the caller's guess (whether it has a camera track)
    assert.equal(screenSourceIndex(undefined, ['video'], 0), 0);
    assert.equal(screenSourceIndex(null, ['video']), 1);
    assert.equal(screenSourceName('ep', 0), 'ep-v0');
    assert.equal(screenSourceName('ep'), 'ep-v1');
  });

  it('takes a -v0 typed desktop for a screen share (shared without a camera)', () => {
    assert.equal(isScreenTrack({ media: 'video', name: 'a-v0', videoType: 'desktop' }), true);
    assert.equal(trackKind({ media: 'video', name: 'a-v0', videoType: 'desktop' }), 'screen');
  });

  it('receives a screen shared without a camera (-v0, videoType desktop) as a screen share', () => {
    const offer = new RemoteOffer(parseJingle(xml(SESSION_INITIATE)), { localOwner: ME });
    // Bob has no camera: his only video source is his screen, named -v0 and typed desktop
    const desktop = SOURCE_ADD_BOB.replaceAll("name='b0b0b0b0-v0'", "name='b0b0b0b0-v0' videoType='desktop'");
    const added = offer.addSources(parseJingle(xml(desktop)));
    const video = added.find((t) => t.media === 'video');
    assert.equal(video.name, 'b0b0b0b0-v0');
    assert.equal(video.videoType, 'desktop');
    assert.equal(trackKind(offer.trackForMid(video.mid)), 'screen');
    // its RTX arriving in a later source-add keeps it a screen share
    const rtxLater = desktop.replace(/<content name='audio'>[\s\S]*?<\/content>/, '');
    offer.addSources(parseJingle(xml(rtxLater)));
    assert.equal(trackKind(offer.trackForMid(video.mid)), 'screen');
    // the same source-add without videoType: a -v0 is a camera
    const plain = new RemoteOffer(parseJingle(xml(SESSION_INITIATE)), { localOwner: ME });
    const camera = plain.addSources(parseJingle(xml(SOURCE_ADD_BOB))).find((t) => t.media === 'video');
    assert.equal(trackKind(camera), 'video');
  });

  it('tells a received screen share from a camera by videoType, else by source name', () => {
    assert.equal(isScreenTrack({ media: 'video', name: 'a-v1', videoType: 'desktop' }), true);
    assert.equal(isScreenTrack({ media: 'video', name: 'a-v1', videoType: 'camera' }), false);
    assert.equal(isScreenTrack({ media: 'video', name: 'a-v1' }), true);
    assert.equal(isScreenTrack({ media: 'video', name: 'a-v0' }), false);
    assert.equal(trackKind({ media: 'audio', name: 'a-a0' }), 'audio');
    assert.equal(trackKind({ media: 'video', name: 'a-v0' }), 'video');
  });

  it('keeps screen shares apart from cameras in the roster, newest last', () => {
    const roster = new Roster('me');
    roster.addTrack('a', 'video', { id: 'cam' }, 'a-v0');
    roster.addTrack('a', 'screen', { id: 'scr' }, 'a-v1');
    roster.addTrack('b', 'screen', { id: 'scr2' }, 'b-v1');
    assert.equal(roster.videoSourceOf('a'), 'a-v0');
    assert.equal(roster.people.get('a').screenSource, 'a-v1');
    assert.deepEqual(roster.screenOrder, ['a', 'b']);
    roster.removeTrack('a', 'screen');
    assert.deepEqual(roster.screenOrder, ['b']);
    assert.equal(roster.people.get('a').tracks.get('video').id, 'cam');
  });
});

describe('views', () => {
  const base = { self: 'me', tiles: ['me', 'a', 'b', 'b#screen'], screens: [], dominant: 'a', pinned: null };
  it('puts the pinned tile, else the newest screen share, else the speaker (stage view) on stage', () => {
    assert.equal(stageTile({ ...base, view: 'tile' }), null);
    assert.equal(stageTile({ ...base, view: 'stage' }), 'a');
    assert.equal(stageTile({ ...base, view: 'stage', dominant: 'me' }), 'a'); // never ourselves
    assert.equal(stageTile({ ...base, view: 'tile', screens: ['b#screen'] }), 'b#screen');
    assert.equal(stageTile({ ...base, view: 'stage', screens: ['b#screen'], pinned: 'a' }), 'a');
    assert.equal(stageTile({ ...base, view: 'audio-only', screens: ['b#screen'] }), null);
  });

  it('asks for the stage at high resolution, a shared screen at full, tiles by size, nothing in audio-only', () => {
    const tiles = [{ source: 'a-v0', height: 100 }, { source: 'b-v0', height: 300 }, { source: 'b-v1', height: 500, screen: true }];
    const stage = viewConstraints({ view: 'stage', tiles, stage: 'b-v1' });
    assert.deepEqual(stage.constraints, { 'a-v0': { maxHeight: 180 }, 'b-v0': { maxHeight: 360 }, 'b-v1': { maxHeight: SCREEN_STAGE_HEIGHT } });
    assert.deepEqual(stage.onStageSources, ['b-v1']);
    const speaker = viewConstraints({ view: 'stage', tiles, stage: 'a-v0' });
    assert.equal(speaker.constraints['a-v0'].maxHeight, 720);
    // a screen shared without a camera is the sharer's -v0, which its camera tile asks for too
    const shared = [{ source: 'c-v0', height: 500, screen: true }, { source: 'c-v0', height: 100 }, { source: 'a-v0', height: 100 }];
    for (const order of [shared, [...shared].reverse()]) {
      const c = viewConstraints({ view: 'tile', tiles: order, stage: 'c-v0' });
      assert.deepEqual(c.constraints, { 'a-v0': { maxHeight: 180 }, 'c-v0': { maxHeight: SCREEN_STAGE_HEIGHT } });
      assert.deepEqual(c.onStageSources, ['c-v0']);
    }
    const audioOnly = viewConstraints({ view: 'audio-only', tiles, stage: null });
    assert.equal(audioOnly.lastN, 0);
    assert.deepEqual(audioOnly.defaultConstraints, { maxHeight: 0 });
    assert.deepEqual(audioOnly.constraints, {});
  });
});

describe('hands and reactions', () => {
  it('sends a raised hand as Jitsi does and reads it back; a lowered hand sends nothing', () => {
    const p = $pres({ to: 'r@muc/me' });
    appendPresence(p, { nick: 'Me', raisedHand: 1700000000123 });
    const text = Strophe.serialize(p.tree());
    assert.match(text, /<jitsi_participant_raisedHand>1700000000123<\/jitsi_participant_raisedHand>/);
    assert.equal(parsePresence(xml(text.replace('to=', 'from='))).raisedHand, 1700000000123);
    const down = $pres({ to: 'r@muc/me' });
    appendPresence(down, { nick: 'Me', raisedHand: null });
    assert.doesNotMatch(Strophe.serialize(down.tree()), /raisedHand/);
    assert.equal(parseRaisedHand('0'), null);
    assert.equal(parseRaisedHand('false'), null);
    assert.equal(parseRaisedHand('<script>'), null);
    assert.equal(parseRaisedHand('9'.repeat(40)), null);
  });

  it('orders hands by raise time', () => {
    const people = [{ endpoint: 'c', raisedHand: 30 }, { endpoint: 'a', raisedHand: null }, { endpoint: 'b', raisedHand: 10 }];
    assert.deepEqual(handQueue(people), ['b', 'c']);
  });

  it('reads reactions from Jitsi endpoint messages, known ones only, and limits floods', () => {
    const msg = reactionMessage(['clap'], 5);
    assert.deepEqual(msg.msgPayload, { name: 'endpoint-reaction', reactions: ['clap'], timestamp: 5 });
    assert.deepEqual(reactionsFrom({ ...msg, from: 'a' }), { from: 'a', reactions: ['clap'] });
    assert.equal(reactionsFrom({ msgPayload: { name: 'endpoint-reaction', reactions: ['<img>', 'toString'] } }), null);
    assert.equal(reactionsFrom({ msgPayload: { type: 'parley-chat', text: 'hi' } }), null);
    const many = reactionsFrom({ from: 'a', msgPayload: { name: 'endpoint-reaction', reactions: Array(100).fill('like') } });
    assert.equal(many.reactions.length, 5);
    const limiter = new ReactionLimiter({ perWindow: 2, windowMs: 1000 });
    assert.deepEqual([limiter.allow('a', 0), limiter.allow('a', 1), limiter.allow('a', 2), limiter.allow('b', 2), limiter.allow('a', 1500)], [true, true, false, true, true]);
  });

  it('tracks connectivity, hands and moderators in the roster', () => {
    const roster = new Roster('me');
    const events = [];
    roster.onChange((kind, endpoint) => events.push([kind, endpoint]));
    roster.applyPresence({ endpoint: 'a', nick: 'A', audioMuted: false, videoMuted: false, raisedHand: 5, role: 'moderator' });
    assert.equal(roster.people.get('a').raisedHand, 5);
    assert.equal(roster.people.get('a').moderator, true);
    roster.setConnectivity('a', false);
    assert.equal(roster.people.get('a').interrupted, true);
    roster.setConnectivity('a', false);
    roster.setConnectivity('a', true);
    assert.deepEqual(events.filter(([k]) => k === 'updated').length, 2);
  });
});

describe('devices', () => {
  const devices = [
    { kind: 'videoinput', deviceId: 'cam1', label: 'Front' }, { kind: 'videoinput', deviceId: 'cam2', label: '' },
    { kind: 'audiooutput', deviceId: 'default', label: 'Default' },
  ];
  it('uses the remembered device while it is plugged in', () => {
    assert.equal(chooseDevice(devices, 'videoinput', 'cam2'), 'cam2');
    assert.equal(chooseDevice(devices, 'videoinput', 'gone'), '');
    assert.deepEqual(deviceOptions(devices, 'videoinput'), [{ value: 'cam1', label: 'Front' }, { value: 'cam2', label: 'Camera 2' }]);
    assert.deepEqual(deviceOptions(devices, 'audiooutput'), []);
    assert.deepEqual(mediaConstraints('videoinput', 'cam1').video.deviceId, { exact: 'cam1' });
    assert.equal(mediaConstraints('audioinput', '').audio, true);
  });
});
