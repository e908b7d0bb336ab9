import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import sdpTransform from 'sdp-transform';

import { activeLayers, layerHeights, Simulcast } from '../src/signalling/simulcast.js';
import { answerToContents, groupTracks } from '../src/signalling/sdp.js';
import { CHROME_ANSWER, ME } from './fixtures.js';

function counter(start = 70001) {
  let next = start;
  return () => next++;
}

const video = (sdp, mid = 'video') => sdpTransform.parse(sdp).media.find((m) => String(m.mid) === mid);

describe('Simulcast.munge', () => {
  it('adds two layers with RTX partners and groups them SIM + FID, like lib-jitsi-meet for Chrome', () => {
    const munged = new Simulcast({ newSsrc: counter() }).munge(CHROME_ANSWER, ['audio', 'video']);
    const m = video(munged);
    assert.deepEqual(m.ssrcGroups, [
      { semantics: 'SIM', ssrcs: '80001 70001 70003' },
      { semantics: 'FID', ssrcs: '80001 80002' },
      { semantics: 'FID', ssrcs: '70001 70002' },
      { semantics: 'FID', ssrcs: '70003 70004' },
    ]);
    // every new SSRC carries the primary's cname and msid
    for (const ssrc of [70001, 70002, 70003, 70004]) {
      assert.deepEqual(m.ssrcs.filter((s) => s.id === ssrc).map((s) => `${s.attribute}:${s.value}`),
        ['cname:abcd', 'msid:stream-1 track-v']);
    }
    assert.ok(munged.includes('a=ssrc-group:SIM 80001 70001 70003\r\n'));
    // audio and the receive-only m-line are untouched
    assert.deepEqual(video(munged, 'audio').ssrcs, video(CHROME_ANSWER, 'audio').ssrcs);
    assert.equal(video(munged, 'video-0').ssrcs, undefined);
  });

  it('reuses the same SSRCs on every renegotiation and leaves a munged description alone', () => {
    const sim = new Simulcast({ newSsrc: counter() });
    const first = sim.munge(CHROME_ANSWER, ['video']);
    const second = sim.munge(CHROME_ANSWER, ['video']);
    assert.equal(first, second);
    assert.equal(sim.munge(first, ['video']), first);
  });

  it('never picks an SSRC already in the description', () => {
    const taken = [80001, 80002, 90001];
    let i = 0;
    const sim = new Simulcast({ newSsrc: () => (i < taken.length ? taken[i++] : 60000 + i++) });
    const groups = video(sim.munge(CHROME_ANSWER, ['video'])).ssrcGroups;
    const all = groups.flatMap((g) => g.ssrcs.split(' ').map(Number));
    assert.equal(new Set(all.filter((s) => s !== 80001 && s !== 80002)).size, 4);
    for (const s of taken) assert.ok(all.filter((x) => x === s).length <= 2);
  });

  it('leaves m-lines that do not send, or are not ours, unchanged', () => {
    const sim = new Simulcast({ newSsrc: counter() });
    assert.equal(sim.munge(CHROME_ANSWER, ['video-0']), CHROME_ANSWER);
    assert.equal(sim.munge(CHROME_ANSWER.replace('a=sendonly\r\na=msid:stream-1 track-v', 'a=inactive\r\na=msid:stream-1 track-v'), ['video']),
      CHROME_ANSWER.replace('a=sendonly\r\na=msid:stream-1 track-v', 'a=inactive\r\na=msid:stream-1 track-v'));
  });

  it('goes into the session-accept as one named source with its SIM group, and a receiver keeps the low layer', () => {
    const munged = new Simulcast({ newSsrc: counter() }).munge(CHROME_ANSWER, ['video']);
    const [, v] = answerToContents(munged, { contentNames: ['audio', 'video'], owner: ME, endpointId: 'me000001' });
    assert.deepEqual(new Set(v.description.sources.map((s) => s.name)), new Set(['me000001-v0']));
    assert.deepEqual(v.description.sources.map((s) => s.ssrc).sort(), [70001, 70002, 70003, 70004, 80001, 80002]);
    assert.deepEqual(v.description.ssrcGroups[0], { semantics: 'SIM', ssrcs: [80001, 70001, 70003] });
    // what another participant's page makes of these sources: one track on the first layer + RTX
    const [track] = groupTracks(v.description.sources.map((s) => ({ ...s, media: 'video' })), v.description.ssrcGroups);
    assert.deepEqual(track.ssrcs, [80001, 80002]);
  });
});

describe('layers and the bridge sender constraint', () => {
  it('halves the camera per layer', () => {
    assert.deepEqual(layerHeights(720), [180, 360, 720]);
    assert.deepEqual(layerHeights(480), [120, 240, 480]);
  });

  it('keeps the layers a receiver asked for, always the lowest, none when nobody watches', () => {
    const heights = [180, 360, 720];
    assert.deepEqual(activeLayers(-1, heights), [true, true, true]);
    assert.deepEqual(activeLayers(720, heights), [true, true, true]);
    assert.deepEqual(activeLayers(360, heights), [true, true, false]);
    assert.deepEqual(activeLayers(180, heights), [true, false, false]);
    assert.deepEqual(activeLayers(90, heights), [true, false, false]);
    assert.deepEqual(activeLayers(0, heights), [false, false, false]);
  });
});
