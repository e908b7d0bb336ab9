// Bundled by tests/integration/test_browser_sdp.py and run inside Chromium: the Jingle offer of
// test/fixtures.js goes through RemoteOffer into a real RTCPeerConnection, the browser's answer
// back through answerToContents, then source-add and source-remove renegotiate. Returns what the
// browser made of it, for the Python test to check.

import { parseJingle } from '../../src/signalling/jingle.js';
import { answerToContents, RemoteOffer } from '../../src/signalling/sdp.js';
import { ME, SESSION_INITIATE, SOURCE_ADD_BOB, SOURCE_REMOVE_ALICE } from '../fixtures-xml.js';

const parse = (text) => parseJingle(new DOMParser().parseFromString(text, 'text/xml').documentElement);

async function negotiate(pc, offer) {
  await pc.setRemoteDescription({ type: 'offer', sdp: offer.toSdp() });
  await pc.setLocalDescription(await pc.createAnswer());
}

window.sdpInChrome = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  const offer = new RemoteOffer(parse(SESSION_INITIATE), { localOwner: ME });
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  const tracks = [];
  pc.ontrack = (e) => tracks.push({ mid: e.transceiver.mid, kind: e.track.kind, endpoint: offer.trackForMid(e.transceiver.mid)?.endpoint });
  await pc.setRemoteDescription({ type: 'offer', sdp: offer.toSdp() });
  for (const t of pc.getTransceivers()) {
    if (t.mid !== 'audio' && t.mid !== 'video') continue;
    await t.sender.replaceTrack(t.mid === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0]);
    t.sender.setStreams(stream);
    t.direction = 'sendonly';
  }
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
    setTimeout(resolve, 3000);
  });
  const accept = answerToContents(pc.localDescription.sdp, { contentNames: ['audio', 'video'], owner: ME, endpointId: 'me000001' });
  const initial = {
    transceivers: pc.getTransceivers().map((t) => [t.mid, t.currentDirection]),
    tracks: [...tracks],
    accept: accept.map((c) => ({
      name: c.name,
      sources: c.description.sources.map((s) => s.name),
      groups: c.description.ssrcGroups.map((g) => g.semantics),
      codecs: c.description.payloadTypes.map((p) => p.name),
      ufrag: !!c.transport.ufrag,
      setup: c.transport.fingerprints[0].setup,
      candidates: c.transport.candidates.length,
    })),
  };
  offer.addSources(parse(SOURCE_ADD_BOB));
  await negotiate(pc, offer);
  const added = { transceivers: pc.getTransceivers().map((t) => [t.mid, t.currentDirection]), tracks: [...tracks] };
  offer.removeSources(parse(SOURCE_REMOVE_ALICE));
  await negotiate(pc, offer);
  const removed = { transceivers: pc.getTransceivers().map((t) => [t.mid, t.currentDirection]) };
  pc.close();
  for (const t of stream.getTracks()) t.stop();
  return { initial, added, removed };
};
