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

// ---- RID-signalled simulcast (Firefox, Safari) ------------------------------------------------
//
// The bridge is the offerer and the browser the answerer, and an answerer may only simulcast
// what the offer asks for (RFC 8853 section 5.3): the remote offer's video m-lines we send on get
// `a=rid:<rid> recv` for each layer, `a=simulcast:recv q;h;f` and the RTP stream id header
// extensions (RFC 8852), so the browser tags every packet of each layer with its RID. The RIDs
// name the layers low to high (quarter, half and full size); the bridge maps them onto its layer
// model by that order. The answer's SSRCs (one per layer, each with its RTX partner) are signalled
// to the focus grouped `SIM` in the order the browser lists them, as lib-jitsi-meet does for
// Firefox; the bridge corrects the order from the RIDs it sees if they disagree.

export const SIMULCAST_RIDS = ['q', 'h', 'f'];
export const RTP_STREAM_ID = 'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id';
export const REPAIRED_RTP_STREAM_ID = 'urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id';

/**
 * The remote offer with RID simulcast asked of the video m-lines whose mid is in `mids`.
 * @param {string} sdp the offer as built from the focus's Jingle
 * @param {string[]} mids
 * @param {string[]} rids low to high
 * @returns {string}
 */
export function offerRidSimulcast(sdp, mids, rids = SIMULCAST_RIDS) {
  const parsed = sdpTransform.parse(sdp);
  let changed = false;
  // one id means one extension in the whole BUNDLE group (RFC 8843 section 9.1)
  const used = new Set(parsed.media.flatMap((m) => (m.ext ?? []).map((e) => Number(e.value))));
  for (const m of parsed.media) {
    if (m.type !== 'video' || !mids.includes(String(m.mid)) || m.simulcast || m.port === 0) continue;
    const ext = m.ext ?? [];
    for (const uri of [RTP_STREAM_ID, REPAIRED_RTP_STREAM_ID]) {
      if (ext.some((e) => e.uri === uri)) continue;
      let id = 1;
      while (used.has(id)) id++;
      if (id > 14) break; // no one-byte id left: no RID simulcast on this m-line
      used.add(id);
      ext.push({ value: id, uri });
    }
    if (!ext.some((e) => e.uri === RTP_STREAM_ID)) continue;
    m.ext = ext;
    m.rids = rids.map((id) => ({ id, direction: 'recv' }));
    m.simulcast = { dir1: 'recv', list1: rids.join(';') };
    changed = true;
  }
  return changed ? sdpTransform.write(parsed) : sdp;
}

/**
 * Our answer as signalled to the focus: a video m-line that sends RID simulcast (and lists one
 * SSRC per layer) gets the `SIM` group of its media SSRCs (those not the RTX half of a FID
 * group), in the order listed. The description given to the browser is not changed.
 * @param {string} sdp our local answer
 * @returns {string}
 */
export function signalRidSimulcast(sdp) {
  const parsed = sdpTransform.parse(sdp);
  let changed = false;
  for (const m of parsed.media) {
    if (m.type !== 'video' || m.simulcast?.dir1 !== 'send') continue;
    const groups = m.ssrcGroups ?? [];
    if (groups.some((g) => g.semantics === 'SIM')) continue;
    const rtx = new Set(groups.filter((g) => g.semantics === 'FID').map((g) => Number(groupSsrcs(g)[1])));
    const media = [...new Set((m.ssrcs ?? []).map((s) => Number(s.id)))].filter((s) => !rtx.has(s));
    if (media.length < 2) continue;
    m.ssrcGroups = [{ semantics: 'SIM', ssrcs: media.join(' ') }, ...groups];
    changed = true;
  }
  return changed ? sdpTransform.write(parsed) : sdp;
}

/** scaleResolutionDownBy for each of `count` layers, low to high (4, 2, 1 for three). */
export function layerScales(count) {
  return Array.from({ length: count }, (_, i) => 2 ** (count - 1 - i));
}
