// SSRC-signalled simulcast for Chrome (the way lib-jitsi-meet's sdp-simulcast does it): the local
// description's camera m-line gets two more SSRCs, each with an RTX partner, grouped as
// `a=ssrc-group:SIM <low> <mid> <high>` plus one `FID` group per layer. Chrome then encodes the
// camera three times (1/4, 1/2 and full size: 180, 360 and 720 lines from a 720p camera) and the
// bridge picks a layer per receiver by SSRC. The same SSRCs are reused on every renegotiation.
// Pure: SDP text in, SDP text out.

import sdpTransform from 'sdp-transform';

export const SIMULCAST_LAYERS = 3;

function randomSsrc() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return a[0] || 1;
}

function groupSsrcs(group) {
  return String(group.ssrcs).split(' ').map(Number);
}

/** Heights of the layers for a camera `trackHeight` lines high (Chrome halves per layer). */
export function layerHeights(trackHeight, layers = SIMULCAST_LAYERS) {
  const out = [];
  for (let i = layers - 1; i >= 0; i--) out.push(Math.round(trackHeight / 2 ** i));
  return out;
}

export class Simulcast {
  /**
   * @param {{layers?: number, newSsrc?: () => number}} options newSsrc: an SSRC source (tests
   *   pass a counter).
   */
  constructor({ layers = SIMULCAST_LAYERS, newSsrc = randomSsrc } = {}) {
    this.layers = layers;
    this.newSsrc = newSsrc;
    /** primary SSRC -> {sim: number[], rtx: (number|undefined)[]} */
    this.known = new Map();
  }

  #layersFor(primary, rtx, taken) {
    let entry = this.known.get(primary);
    if (!entry) {
      const fresh = () => {
        let s;
        do s = this.newSsrc() >>> 0; while (!s || taken.has(s));
        taken.add(s);
        return s;
      };
      const sim = [primary];
      const rtxs = [rtx];
      for (let i = 1; i < this.layers; i++) {
        sim.push(fresh());
        rtxs.push(rtx === undefined ? undefined : fresh());
      }
      entry = { sim, rtx: rtxs };
      this.known.set(primary, entry);
    }
    return entry;
  }

  /**
   * Add the simulcast layers to the sending video m-lines whose mid is in `mids`. m-lines that
   * already have a SIM group, send nothing, or carry no SSRC are left alone.
   * @param {string} sdp a local description (offer or answer)
   * @param {string[]} mids the m-lines our camera is sent on
   * @returns {string}
   */
  munge(sdp, mids) {
    const parsed = sdpTransform.parse(sdp);
    let changed = false;
    for (const m of parsed.media) {
      if (m.type !== 'video' || !mids.includes(String(m.mid))) continue;
      if (!['sendonly', 'sendrecv'].includes(m.direction ?? 'sendrecv')) continue;
      const groups = m.ssrcGroups ?? [];
      if (groups.some((g) => g.semantics === 'SIM')) continue;
      const ssrcs = m.ssrcs ?? [];
      if (!ssrcs.length) continue;
      const fid = groups.find((g) => g.semantics === 'FID');
      const primary = fid ? groupSsrcs(fid)[0] : Number(ssrcs[0].id);
      const rtx = fid ? groupSsrcs(fid)[1] : undefined;
      const taken = new Set(parsed.media.flatMap((x) => (x.ssrcs ?? []).map((s) => Number(s.id))));
      const { sim, rtx: rtxs } = this.#layersFor(primary, rtx, taken);
      const attributes = ssrcs.filter((s) => Number(s.id) === primary);
      const lines = [...ssrcs];
      const add = (ssrc) => {
        for (const a of attributes) lines.push({ id: ssrc, attribute: a.attribute, value: a.value });
      };
      for (let i = 1; i < sim.length; i++) {
        add(sim[i]);
        if (rtxs[i] !== undefined) add(rtxs[i]);
      }
      m.ssrcs = lines;
      const fids = sim.flatMap((s, i) => (rtxs[i] === undefined ? [] : [{ semantics: 'FID', ssrcs: `${s} ${rtxs[i]}` }]));
      m.ssrcGroups = [
        { semantics: 'SIM', ssrcs: sim.join(' ') },
        ...fids,
        ...groups.filter((g) => g.semantics !== 'FID'),
      ];
      changed = true;
    }
    return changed ? sdpTransform.write(parsed) : sdp;
  }
}

/**
 * Which simulcast layers to keep sending for the bridge's SenderSourceConstraints: none for 0
 * (nobody receives us), all for -1, else those not taller than `maxHeight` (always the lowest).
 * @param {number} maxHeight
 * @param {number[]} heights layer heights, low to high
 * @returns {boolean[]} active flag per layer
 */
export function activeLayers(maxHeight, heights) {
  if (maxHeight === 0) return heights.map(() => false);
  if (!(maxHeight > 0)) return heights.map(() => true);
  return heights.map((h, i) => i === 0 || h <= maxHeight);
}
