import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import sdpTransform from 'sdp-transform';

import { detectBrowser } from '../src/browser.js';
import {
  layerScales, offerRidSimulcast, REPAIRED_RTP_STREAM_ID, RTP_STREAM_ID, signalRidSimulcast,
} from '../src/signalling/simulcast.js';

const OFFER = [
  'v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE audio video',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 0.0.0.0', 'a=mid:audio', 'a=recvonly', 'a=rtcp-mux',
  'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level', 'a=rtpmap:111 opus/48000/2',
  'm=video 9 UDP/TLS/RTP/SAVPF 100 96', 'c=IN IP4 0.0.0.0', 'a=mid:video', 'a=recvonly', 'a=rtcp-mux',
  'a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
  'a=rtpmap:100 VP8/90000', 'a=rtpmap:96 rtx/90000', 'a=fmtp:96 apt=100',
  'm=video 9 UDP/TLS/RTP/SAVPF 100', 'c=IN IP4 0.0.0.0', 'a=mid:remote-1', 'a=sendonly', 'a=rtcp-mux',
  'a=rtpmap:100 VP8/90000', '',
].join('\r\n');

// what Firefox answers to the munged offer: one SSRC and RTX partner per layer, no SIM group
const FIREFOX_ANSWER = [
  'v=0', 'o=mozilla...THIS_IS_SDPARTA-99.0 1 0 IN IP4 0.0.0.0', 's=-', 't=0 0', 'a=group:BUNDLE audio video',
  'm=video 9 UDP/TLS/RTP/SAVPF 100 96', 'c=IN IP4 0.0.0.0', 'a=sendonly', 'a=mid:video', 'a=rtcp-mux',
  'a=extmap:2/sendonly urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id',
  'a=extmap:4/sendonly urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id',
  'a=rtpmap:100 VP8/90000', 'a=rtpmap:96 rtx/90000', 'a=fmtp:96 apt=100',
  'a=rid:q send', 'a=rid:h send', 'a=rid:f send', 'a=simulcast:send q;h;f',
  'a=ssrc:11 cname:x', 'a=ssrc:12 cname:x', 'a=ssrc:21 cname:x', 'a=ssrc:22 cname:x', 'a=ssrc:31 cname:x', 'a=ssrc:32 cname:x',
  'a=ssrc-group:FID 11 12', 'a=ssrc-group:FID 21 22', 'a=ssrc-group:FID 31 32', '',
].join('\r\n');

const media = (sdp, mid) => sdpTransform.parse(sdp).media.find((m) => String(m.mid) === mid);

describe('detectBrowser', () => {
  it('tells Chromium (SSRC simulcast) from Firefox and Safari (RID simulcast)', () => {
    const chrome = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
    const firefox = 'Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0';
    const safari = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15';
    const edge = `${chrome} Edg/131.0.0.0`;
    assert.deepEqual(detectBrowser(chrome), { name: 'chromium', simulcast: 'ssrc' });
    assert.deepEqual(detectBrowser(edge), { name: 'chromium', simulcast: 'ssrc' });
    assert.deepEqual(detectBrowser(firefox), { name: 'firefox', simulcast: 'rid' });
    assert.deepEqual(detectBrowser(safari), { name: 'safari', simulcast: 'rid' });
    assert.deepEqual(detectBrowser(''), { name: 'other', simulcast: 'ssrc' });
  });
});

describe('offerRidSimulcast', () => {
  it('asks our camera m-line for q/h/f with the RTP stream id extensions on ids free in the bundle', () => {
    const m = media(offerRidSimulcast(OFFER, ['video']), 'video');
    assert.deepEqual(m.rids, [{ id: 'q', direction: 'recv' }, { id: 'h', direction: 'recv' }, { id: 'f', direction: 'recv' }]);
    assert.deepEqual(m.simulcast, { dir1: 'recv', list1: 'q;h;f' });
    const ids = Object.fromEntries(m.ext.map((e) => [e.uri, e.value]));
    // 1 is audio's (one id, one extension across BUNDLE), 3 is abs-send-time
    assert.equal(ids[RTP_STREAM_ID], 2);
    assert.equal(ids[REPAIRED_RTP_STREAM_ID], 4);
  });

  it('leaves the receive m-lines, the audio and an already munged offer alone', () => {
    const munged = offerRidSimulcast(OFFER, ['video']);
    assert.equal(media(munged, 'remote-1').simulcast, undefined);
    assert.equal(media(munged, 'audio').rids, undefined);
    assert.equal(offerRidSimulcast(munged, ['video']), munged);
    assert.equal(offerRidSimulcast(OFFER, []), OFFER);
  });
});

describe('signalRidSimulcast', () => {
  it('groups the media SSRCs of a RID simulcast answer SIM in the order listed, keeping FID', () => {
    const m = media(signalRidSimulcast(FIREFOX_ANSWER), 'video');
    assert.deepEqual(m.ssrcGroups[0], { semantics: 'SIM', ssrcs: '11 21 31' });
    assert.equal(m.ssrcGroups.filter((g) => g.semantics === 'FID').length, 3);
  });

  it('changes nothing without a=simulcast:send or with one SSRC', () => {
    const plain = FIREFOX_ANSWER.replace('a=simulcast:send q;h;f\r\n', '');
    assert.equal(signalRidSimulcast(plain), plain);
  });
});

describe('layerScales', () => {
  it('scales the layers down 4, 2, 1 (low to high)', () => {
    assert.deepEqual(layerScales(3), [4, 2, 1]);
    assert.deepEqual(layerScales(2), [2, 1]);
  });
});
