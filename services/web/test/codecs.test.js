import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import sdpTransform from 'sdp-transform';

import { preferCodec } from '../src/signalling/codecs.js';

const OFFER = [
  'v=0', 'o=- 1 1 IN IP4 0.0.0.0', 's=-', 't=0 0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111 112 126', 'a=mid:audio', 'a=rtpmap:111 opus/48000/2', 'a=rtpmap:112 red/48000/2',
  'a=fmtp:112 111/111', 'a=rtpmap:126 telephone-event/8000',
  'm=video 9 UDP/TLS/RTP/SAVPF 100 96 101 97 107 99', 'a=mid:video', 'a=rtpmap:100 VP8/90000', 'a=rtpmap:96 rtx/90000',
  'a=fmtp:96 apt=100', 'a=rtpmap:101 VP9/90000', 'a=rtpmap:97 rtx/90000', 'a=fmtp:97 apt=101', 'a=rtpmap:107 H264/90000',
  'a=fmtp:107 profile-level-id=42e01f;packetization-mode=1', 'a=rtpmap:99 rtx/90000', 'a=fmtp:99 apt=107',
  'm=video 9 UDP/TLS/RTP/SAVPF 100 96 101 97 107 99', 'a=mid:r0', 'a=rtpmap:100 VP8/90000', 'a=rtpmap:101 VP9/90000',
  '',
].join('\r\n');

const payloads = (sdp) => sdpTransform.parse(sdp).media.map((m) => String(m.payloads));

describe('preferCodec', () => {
  it('puts the codec and its RTX first on our own m-line only', () => {
    assert.deepEqual(payloads(preferCodec(OFFER, ['video'], 'VP9')),
      ['111 112 126', '101 97 100 96 107 99', '100 96 101 97 107 99']);
    assert.deepEqual(payloads(preferCodec(OFFER, ['video'], 'H264'))[1], '107 99 100 96 101 97');
    assert.deepEqual(payloads(preferCodec(OFFER, ['audio'], 'red'))[0], '112 111 126');
  });

  it('leaves an m-line without the codec as it is', () => {
    assert.deepEqual(payloads(preferCodec(OFFER, ['video'], 'AV1')), payloads(OFFER));
  });
});
