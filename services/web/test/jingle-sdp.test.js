import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import sdpTransform from 'sdp-transform';
import { $iq, Strophe } from 'strophe.js';
import { DOMParser } from '@xmldom/xmldom';

import { appendContents, isMove, NS, parseJingle } from '../src/signalling/jingle.js';
import {
  answerToContents, candidateLine, endpointOf, parseCandidateLine, RemoteOffer,
} from '../src/signalling/sdp.js';
import { JingleError } from '../src/signalling/xml.js';
import {
  ALICE, BOB, CHROME_ANSWER, ME, SESSION_INITIATE, SESSION_TERMINATE_MOVING, SOURCE_ADD_BOB,
  SOURCE_REMOVE_ALICE, xml,
} from './fixtures.js';

const offer = () => new RemoteOffer(parseJingle(xml(SESSION_INITIATE)), { localOwner: ME });
const mlines = (sdp) => sdpTransform.parse(sdp).media;

describe('parseJingle', () => {
  it('reads a session-initiate built like jicofo offers', () => {
    const s = parseJingle(xml(SESSION_INITIATE));
    assert.equal(s.action, 'session-initiate');
    assert.equal(s.sid, '6d4k2j');
    assert.equal(s.initiator, 'focus@auth.meet.jitsi/focus');
    assert.deepEqual(s.bundle, ['audio', 'video']);
    assert.deepEqual(s.contents.map((c) => c.name), ['audio', 'video']);
    const [audio, video] = s.contents;
    assert.deepEqual(audio.description.payloadTypes[0], {
      id: 111, name: 'opus', clockrate: 48000, channels: 2,
      parameters: { minptime: '10', useinbandfec: '1' }, rtcpFb: [{ type: 'transport-cc' }],
    });
    assert.equal(audio.description.extmapAllowMixed, true);
    assert.deepEqual(audio.description.sources, [
      { ssrc: 1111, name: 'a1b2c3d4-a0', owner: ALICE, msid: 'a1b2c3d4-audio-1 audio-track-1', videoType: undefined },
    ]);
    assert.equal(video.description.sources.length, 6);
    assert.deepEqual(video.description.ssrcGroups[0], { semantics: 'SIM', ssrcs: [2221, 2222, 2223] });
    assert.deepEqual(video.description.payloadTypes[0].rtcpFb[0], { type: 'ccm', subtype: 'fir' });
    const t = audio.transport;
    assert.equal(t.ufrag, '2f1a');
    assert.equal(t.pwd, '4s8rjl3kq5n0hhm9bfg0g1h2i3');
    assert.equal(t.fingerprints[0].setup, 'actpass');
    assert.match(t.fingerprints[0].value, /^8F:2B/);
    assert.equal(t.candidates.length, 2);
    assert.deepEqual(t.candidates[1], {
      foundation: '2', component: 1, protocol: 'udp', priority: 1694498815, ip: '203.0.113.7', port: 10000,
      type: 'srflx', generation: 0, relAddr: '127.0.0.1', relPort: 10000,
    });
    assert.equal(t.webSocketUrl, 'ws://127.0.0.1:8000/colibri-ws/jvb1/c0ffee/me000001?pwd=4s8rjl3kq5n0hhm9bfg0g1h2i3');
  });

  it('reads the reason of a session-terminate', () => {
    const s = parseJingle(xml(SESSION_TERMINATE_MOVING));
    assert.equal(s.action, 'session-terminate');
    assert.deepEqual(s.reason, { condition: 'success', text: 'moving' });
    assert.equal(isMove(s), true);
    assert.equal(isMove(parseJingle(xml(SESSION_INITIATE))), false);
  });

  it('rejects malformed stanzas with a message naming the problem', () => {
    assert.throws(() => parseJingle(xml('<iq xmlns="jabber:client"/>')), JingleError);
    assert.throws(
      () => parseJingle(xml(SESSION_INITIATE.replace("ssrc='1111'", "ssrc='eleven'"))),
      /ssrc='eleven'.*not an integer/,
    );
    assert.throws(() => parseJingle(xml("<jingle xmlns='urn:xmpp:jingle:1' sid='x'/>")), /lacks an action/);
  });
});

describe('RemoteOffer', () => {
  it('turns the offer into Unified Plan SDP with one m-line per remote track', () => {
    const o = offer();
    const sdp = o.toSdp();
    const parsed = sdpTransform.parse(sdp);
    assert.equal(parsed.icelite, 'ice-lite');
    const media = parsed.media;
    assert.deepEqual(media.map((m) => [m.mid, m.type, m.direction]), [
      ['audio', 'audio', 'recvonly'],
      ['video', 'video', 'recvonly'],
      ['audio-0', 'audio', 'sendonly'],
      ['video-1', 'video', 'sendonly'],
    ]);
    assert.equal(parsed.groups[0].mids, 'audio video audio-0 video-1');
    // the base m-lines carry the bridge's transport and candidates
    assert.equal(media[0].iceUfrag, '2f1a');
    assert.equal(media[0].setup, 'actpass');
    assert.equal(media[0].fingerprint.type, 'sha-256');
    assert.equal(media[0].candidates.length, 2);
    assert.equal(media[0].rtp[0].codec, 'opus');
    assert.equal(media[0].rtp[0].encoding, 2);
    assert.equal(media[0].fmtp[0].config, 'minptime=10;useinbandfec=1');
    assert.deepEqual(media[1].rtcpFb.map((f) => `${f.type} ${f.subtype ?? ''}`.trim()),
      ['ccm fir', 'nack', 'nack pli', 'transport-cc']);
    assert.deepEqual(media[1].ext.map((e) => e.value), [3, 5]);
    // a simulcast sender is received as its first layer and that layer's RTX
    const video = media[3];
    assert.deepEqual([...new Set(video.ssrcs.map((s) => s.id))], [2221, 2231]);
    assert.deepEqual(video.ssrcGroups, [{ semantics: 'FID', ssrcs: '2221 2231' }]);
    assert.deepEqual(video.msid, [{ id: 'a1b2c3d4', appdata: 'a1b2c3d4-v0' }]);
    // the track is found by the mid the browser reports in its track event
    assert.equal(o.trackForMid('video-1').endpoint, 'a1b2c3d4');
    assert.equal(o.trackForMid('video'), undefined);
    assert.equal(o.webSocketUrl, 'ws://127.0.0.1:8000/colibri-ws/jvb1/c0ffee/me000001?pwd=4s8rjl3kq5n0hhm9bfg0g1h2i3');
  });

  it('leaves out ice-lite when the bridge is a full ICE agent (no <ice-lite/> marker)', () => {
    const full = SESSION_INITIATE.replaceAll("<ice-lite xmlns='http://jitsi.org/protocol/colibri'/>", '');
    const o = new RemoteOffer(parseJingle(xml(full)));
    assert.equal(sdpTransform.parse(o.toSdp()).icelite, undefined);
  });

  it('adds m-lines on source-add and bumps the session version', () => {
    const o = offer();
    const before = sdpTransform.parse(o.toSdp()).origin.sessionVersion;
    const added = o.addSources(parseJingle(xml(SOURCE_ADD_BOB)));
    assert.deepEqual(added.map((t) => [t.mid, t.endpoint, t.ssrcs]), [
      ['audio-2', 'b0b0b0b0', [3331]],
      ['video-3', 'b0b0b0b0', [4441, 4442]],
    ]);
    const parsed = sdpTransform.parse(o.toSdp());
    assert.equal(parsed.origin.sessionVersion, before + 1);
    assert.equal(parsed.media.length, 6);
    assert.deepEqual(parsed.media[5].ssrcGroups, [{ semantics: 'FID', ssrcs: '4441 4442' }]);
    // adding the same sources again changes nothing
    assert.deepEqual(o.addSources(parseJingle(xml(SOURCE_ADD_BOB))), []);
    assert.equal(sdpTransform.parse(o.toSdp()).media.length, 6);
  });

  it('makes removed tracks inactive, keeping their m-lines, and re-activates a returning source', () => {
    const o = offer();
    o.addSources(parseJingle(xml(SOURCE_ADD_BOB)));
    const removed = o.removeSources(parseJingle(xml(SOURCE_REMOVE_ALICE)));
    assert.deepEqual(removed.map((t) => t.mid).sort(), ['audio-0', 'video-1']);
    const media = mlines(o.toSdp());
    assert.equal(media.length, 6);
    assert.deepEqual(media.map((m) => m.direction), ['recvonly', 'recvonly', 'inactive', 'inactive', 'sendonly', 'sendonly']);
    assert.equal(media[2].ssrcs, undefined);
    assert.deepEqual(o.activeTracks().map((t) => t.endpoint), ['b0b0b0b0', 'b0b0b0b0']);
    // Alice comes back with the same source names: her old m-lines are reused
    o.addSources(parseJingle(xml(SESSION_INITIATE)));
    assert.deepEqual(mlines(o.toSdp()).map((m) => m.direction).slice(2, 4), ['sendonly', 'sendonly']);
  });

  it('never receives its own sources', () => {
    const mine = SOURCE_ADD_BOB.replaceAll(BOB, ME);
    const o = offer();
    assert.deepEqual(o.addSources(parseJingle(xml(mine))), []);
  });

  it('refuses an offer without transport or media', () => {
    const noTransport = SESSION_INITIATE.replace(/<transport[\s\S]*?<\/transport>/g, '');
    assert.throws(() => new RemoteOffer(parseJingle(xml(noTransport))), /no ICE transport/);
    const dataOnly = "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s'><content name='data'/></jingle>";
    assert.throws(() => new RemoteOffer(parseJingle(xml(dataOnly))), /no audio or video/);
  });
});

describe('session-accept from the browser answer', () => {
  const contents = () => answerToContents(CHROME_ANSWER, { contentNames: ['audio', 'video'], owner: ME, endpointId: 'me000001' });

  it('keeps only the offered contents, with transport and named sources', () => {
    const c = contents();
    assert.deepEqual(c.map((x) => x.name), ['audio', 'video']);
    const [audio, video] = c;
    assert.deepEqual(audio.description.sources, [{ ssrc: 90001, name: 'me000001-a0', owner: ME, msid: 'stream-1 track-a' }]);
    assert.deepEqual(video.description.sources.map((s) => [s.ssrc, s.name, s.videoType]),
      [[80001, 'me000001-v0', 'camera'], [80002, 'me000001-v0', 'camera']]);
    assert.deepEqual(video.description.ssrcGroups, [{ semantics: 'FID', ssrcs: [80001, 80002] }]);
    assert.deepEqual(audio.description.payloadTypes[0].parameters, { minptime: '10', useinbandfec: '1' });
    assert.deepEqual(video.description.payloadTypes[1], { id: 96, name: 'rtx', clockrate: 90000, parameters: { apt: '100' }, rtcpFb: [] });
    assert.equal(audio.transport.ufrag, 'Zq9P');
    assert.equal(audio.transport.fingerprints[0].setup, 'active');
    assert.equal(audio.transport.candidates[0].ip, '127.0.0.1');
    assert.equal(audio.transport.candidates[0].port, 51234);
  });

  it('serializes to a session-accept that parses back to the same contents', () => {
    const c = contents();
    const iq = $iq({ to: 'standup@muc.meet.jitsi/focus', type: 'set' })
      .c('jingle', { xmlns: NS.JINGLE, action: 'session-accept', sid: '6d4k2j', responder: 'guest@meet.jitsi/r1' });
    appendContents(iq, c, { bundle: ['audio', 'video'] });
    const text = Strophe.serialize(iq.tree());
    const back = parseJingle(new DOMParser().parseFromString(text, 'text/xml').documentElement);
    assert.equal(back.action, 'session-accept');
    assert.deepEqual(back.bundle, ['audio', 'video']);
    assert.deepEqual(back.contents[1].description.ssrcGroups, c[1].description.ssrcGroups);
    assert.deepEqual(back.contents[0].description.sources[0].owner, ME);
    assert.deepEqual(back.contents[0].transport.candidates[0].ip, '127.0.0.1');
    assert.deepEqual(back.contents[1].description.payloadTypes, c[1].description.payloadTypes);
    assert.deepEqual(back.contents[0].transport.fingerprints, c[0].transport.fingerprints);
  });

  it('names sources with the media-level a=msid when the answer has no a=ssrc msid lines', () => {
    const modern = CHROME_ANSWER.split('\r\n').filter((l) => !/^a=ssrc:\d+ msid:/.test(l)).join('\r\n');
    const [audio, video] = answerToContents(modern, { contentNames: ['audio', 'video'], owner: ME, endpointId: 'me000001' });
    assert.equal(audio.description.sources[0].msid, 'stream-1 track-a');
    assert.deepEqual(video.description.sources.map((s) => s.msid), ['stream-1 track-v', 'stream-1 track-v']);
  });

  it('rejects an answer that lacks the offered contents', () => {
    assert.throws(() => answerToContents(CHROME_ANSWER, { contentNames: ['data'], owner: ME, endpointId: 'x' }),
      /none of the offered contents/);
  });
});

describe('candidates', () => {
  it('round-trips an RTCIceCandidate line', () => {
    const line = 'candidate:3442447574 1 udp 2122260223 127.0.0.1 51234 typ host generation 0';
    const c = parseCandidateLine(line);
    assert.equal(c.ip, '127.0.0.1');
    assert.equal(c.port, 51234);
    assert.equal(candidateLine(c), line);
    assert.equal(parseCandidateLine(''), undefined);
    assert.throws(() => parseCandidateLine('garbage'), /not an ICE candidate/);
  });

  it('names endpoints after the MUC resource', () => {
    assert.equal(endpointOf(ALICE), 'a1b2c3d4');
    assert.equal(endpointOf(undefined), undefined);
  });
});

describe('nameless fmtp parameters (RED, RFC 2198)', () => {
  const RED = "<payload-type id='112' name='red' clockrate='48000' channels='2'><parameter value='111/111'/></payload-type>";

  it('an offer with RED renders a=fmtp:112 111/111', () => {
    const withRed = SESSION_INITIATE.replace("<payload-type id='126'", `${RED}<payload-type id='126'`);
    const session = parseJingle(xml(withRed));
    assert.deepEqual(session.contents[0].description.payloadTypes[1].parameters, { '': '111/111' });
    const sdp = new RemoteOffer(session, { localOwner: ME }).toSdp();
    assert.match(sdp, /a=fmtp:112 111\/111\r\n/);
  });

  it('an answer with RED goes back to Jingle as a parameter without a name', () => {
    const answer = CHROME_ANSWER.replace('a=rtpmap:111 opus/48000/2', 'a=rtpmap:111 opus/48000/2\r\na=rtpmap:112 red/48000/2\r\na=fmtp:112 111/111')
      .replace(/m=audio 9 UDP\/TLS\/RTP\/SAVPF 111/, 'm=audio 9 UDP/TLS/RTP/SAVPF 111 112');
    const contents = answerToContents(answer, { contentNames: ['audio', 'video'], owner: ME, endpointId: 'me000001' });
    const red = contents[0].description.payloadTypes.find((p) => p.name === 'red');
    assert.deepEqual(red.parameters, { '': '111/111' });
    const iq = $iq({ to: 'standup@muc.meet.jitsi/focus', type: 'set' })
      .c('jingle', { xmlns: NS.JINGLE, action: 'session-accept', sid: '6d4k2j' });
    appendContents(iq, contents, { bundle: ['audio', 'video'] });
    const text = Strophe.serialize(iq.tree());
    assert.match(text, /<parameter value="111\/111"\/>/);
    assert.deepEqual(parseJingle(xml(text).getElementsByTagName('jingle')[0] ?? xml(text)).contents[0].description.payloadTypes
      .find((p) => p.name === 'red').parameters, { '': '111/111' });
  });
});
