// Jingle session model <-> SDP, for a browser that answers a bridge's offer (Unified Plan).
//
// The focus offers one `audio` and one `video` content carrying every remote participant's
// sources. Chrome wants one m-line per remote track, so RemoteOffer keeps the offer's first
// m-lines (named after the Jingle contents: the browser sends its own camera and microphone on
// them) and adds a `sendonly` m-line per remote track. Removed tracks become `inactive` m-lines
// (an m-line can never be deleted). answerToContents() turns the browser's answer back into the
// Jingle contents of a session-accept. Pure functions and state: no I/O, no WebRTC objects.

import sdpTransform from 'sdp-transform';
import { JingleError } from './xml.js';

const PROTOCOL = 'UDP/TLS/RTP/SAVPF';
const SAFE_ID = /[^\w-]/g;

/** The endpoint id of an occupant JID `room@muc/endpoint` (the MUC resource). */
export function endpointOf(owner) {
  if (!owner) return undefined;
  const slash = owner.indexOf('/');
  return slash >= 0 ? owner.slice(slash + 1) : owner;
}

/**
 * Group sources into tracks: all SSRCs of one named source (simulcast layers, RTX) belong to one
 * track; unnamed sources are grouped by owner and media. Returns tracks with the SSRCs Chrome is
 * told about: the primary (first SIM layer) and its FID (RTX) partner.
 */
export function groupTracks(sources, ssrcGroups) {
  const byKey = new Map();
  const keyOfSsrc = new Map();
  for (const s of sources) {
    const key = s.name ? `${s.media}|${s.name}` : s.owner ? `${s.media}|${s.owner}` : `${s.media}|ssrc:${s.ssrc}`;
    keyOfSsrc.set(s.ssrc, key);
    let track = byKey.get(key);
    if (!track) {
      track = { key, media: s.media, name: s.name, owner: s.owner, endpoint: endpointOf(s.owner), all: [], groups: [] };
      byKey.set(key, track);
    }
    // Jitsi's videoType (camera/desktop): what tells a screen share from a camera, whatever its name
    if (s.videoType && !track.videoType) track.videoType = s.videoType;
    if (!track.all.includes(s.ssrc)) track.all.push(s.ssrc);
  }
  for (const g of ssrcGroups) {
    const key = keyOfSsrc.get(g.ssrcs[0]);
    if (key && byKey.has(key)) byKey.get(key).groups.push({ semantics: g.semantics, ssrcs: [...g.ssrcs] });
  }
  for (const track of byKey.values()) {
    const sim = track.groups.find((g) => g.semantics === 'SIM');
    const primary = sim ? sim.ssrcs[0] : (track.groups.find((g) => g.semantics === 'FID')?.ssrcs[0] ?? track.all[0]);
    const fid = track.groups.find((g) => g.semantics === 'FID' && g.ssrcs[0] === primary);
    track.ssrcs = fid ? [...fid.ssrcs] : [primary];
    track.fid = fid ? { semantics: 'FID', ssrcs: [...fid.ssrcs] } : undefined;
  }
  return [...byKey.values()];
}

/** An a=fmtp config as parameters; a nameless one (RED's `111/111`, RFC 2198) under ''. */
function fmtpParams(config) {
  const params = {};
  for (const item of config.split(';').map((i) => i.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    if (eq < 0) params[''] = item;
    else params[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return params;
}

function fmtpConfig(parameters) {
  return Object.entries(parameters)
    .map(([k, v]) => (k === '' ? v : v === '' ? k : `${k}=${v}`))
    .join(';');
}

/** The remote description the browser is given: the bridge's offer with one m-line per track. */
export class RemoteOffer {
  /**
   * @param {import('./jingle.js').JingleSession} session a session-initiate
   * @param {{localOwner?: string}} options localOwner: our own occupant JID, whose sources are
   *   never received.
   */
  constructor(session, { localOwner } = {}) {
    this.sid = session.sid;
    this.localOwner = localOwner;
    this.version = 1;
    this.base = session.contents.filter((c) => c.description && ['audio', 'video'].includes(c.description.media));
    if (!this.base.length) throw new JingleError('the offer has no audio or video content');
    const withTransport = session.contents.find((c) => c.transport && c.transport.ufrag);
    if (!withTransport) throw new JingleError('the offer has no ICE transport (ufrag/pwd)');
    this.transport = withTransport.transport;
    if (!this.transport.fingerprints.length) throw new JingleError('the offer has no DTLS fingerprint');
    // An ICE-lite bridge (Parley's <ice-lite/> marker) never nominates: the browser must control.
    this.iceLite = session.contents.some((c) => c.transport?.iceLite);
    // The bridge's SCTP data channel (focus `enable-sctp`): a `data` content with an sctpmap.
    this.data = session.contents.find((c) => c.transport?.sctpPort && c.description?.media !== 'audio' && c.description?.media !== 'video');
    this.extraCandidates = [];
    /** @type {Map<string, any>} track key -> track with its mid and state */
    this.tracks = new Map();
    this.nextMid = 0;
    this.addSources(session);
  }

  /** The Colibri WebSocket URL the bridge advertised, if any. */
  get webSocketUrl() {
    for (const c of this.base) if (c.transport?.webSocketUrl) return c.transport.webSocketUrl;
    return this.transport.webSocketUrl;
  }

  /** Apply a session-initiate or source-add; returns the tracks that appeared. */
  addSources(fragment) {
    const sources = [];
    const groups = [];
    for (const content of fragment.contents) {
      const d = content.description;
      if (!d) continue;
      for (const s of d.sources) sources.push({ ...s, media: d.media });
      for (const g of d.ssrcGroups) groups.push({ ...g, media: d.media });
    }
    const added = [];
    const foreign = sources.filter((s) => !this.localOwner || s.owner !== this.localOwner);
    for (const track of groupTracks(foreign, groups)) {
      const existing = this.tracks.get(track.key);
      if (existing && existing.local) continue;
      if (existing && existing.active) {
        // more SSRCs of a known track (e.g. its RTX arriving late): regroup with what we have
        const merged = groupTracks(
          [...new Set([...existing.all, ...track.all])].map((ssrc) => ({
            ssrc, media: track.media, name: track.name, owner: track.owner, videoType: track.videoType ?? existing.videoType,
          })),
          [...existing.groups, ...track.groups],
        )[0];
        Object.assign(existing, merged, { mid: existing.mid, active: true });
        continue;
      }
      const mid = existing ? existing.mid : `${track.media}-${this.nextMid++}`;
      const entry = { ...track, mid, active: true };
      this.tracks.set(track.key, entry);
      added.push(entry);
    }
    if (added.length) this.version += 1;
    return added;
  }

  /**
   * A receive-only m-line (from the bridge's side) on which the browser sends one more video
   * source of ours, e.g. a screen share; appended after every m-line so far (their order never
   * changes). Returns false when it is already there.
   */
  addLocalSlot(mid) {
    const key = `local|${mid}`;
    if (this.tracks.has(key)) return false;
    this.tracks.set(key, { key, media: 'video', mid, local: true, active: true, all: [], ssrcs: [], groups: [] });
    this.version += 1;
    return true;
  }

  /** Apply a source-remove; returns the tracks that went away (their m-lines become inactive). */
  removeSources(fragment) {
    const gone = new Set();
    for (const content of fragment.contents) for (const s of content.description?.sources ?? []) gone.add(s.ssrc);
    const removed = [];
    for (const track of this.tracks.values()) {
      if (!track.active || track.local) continue;
      track.all = track.all.filter((ssrc) => !gone.has(ssrc));
      if (track.all.length === 0 || gone.has(track.ssrcs[0])) {
        track.active = false;
        removed.push(track);
      }
    }
    if (removed.length) this.version += 1;
    return removed;
  }

  /** Add candidates from a transport-info (they go into the next SDP as well). */
  addCandidates(candidates) {
    this.extraCandidates.push(...candidates);
  }

  /** The track received on `mid`, or undefined for the base (sending) m-lines. */
  trackForMid(mid) {
    for (const t of this.tracks.values()) if (t.mid === mid && !t.local) return t;
    return undefined;
  }

  /** Tracks currently received. */
  activeTracks() {
    return [...this.tracks.values()].filter((t) => t.active && !t.local);
  }

  /** The SDP offer text. */
  toSdp() {
    const baseByMedia = new Map(this.base.map((c) => [c.description.media, c]));
    const media = [];
    this.base.forEach((content, i) => {
      media.push(this.#mline(content, content.name, 'recvonly', null, i === 0));
    });
    if (this.data) media.push(this.#dataMline(this.data));
    for (const track of this.tracks.values()) {
      const content = baseByMedia.get(track.media);
      if (!content) continue; // a source for a media the offer has no content for
      if (track.local) {
        media.push(this.#mline(content, track.mid, 'recvonly', null, false));
        continue;
      }
      media.push(this.#mline(content, track.mid, track.active ? 'sendonly' : 'inactive', track.active ? track : null, false));
    }
    const session = {
      version: 0,
      origin: {
        username: '-', sessionId: sessionIdOf(this.sid), sessionVersion: this.version,
        netType: 'IN', ipVer: 4, address: '127.0.0.1',
      },
      name: '-',
      timing: { start: 0, stop: 0 },
      groups: [{ type: 'BUNDLE', mids: media.map((m) => m.mid).join(' ') }],
      msidSemantic: { semantic: 'WMS', token: '*' },
      media,
    };
    if (this.iceLite) session.icelite = 'ice-lite';
    return sdpTransform.write(session);
  }

  /** `m=application … webrtc-datachannel` for the bridge's data channel (after the base m-lines,
   * before the per-track ones, so its place never changes). */
  #dataMline(content) {
    const t = this.transport;
    const fp = t.fingerprints[0];
    return {
      type: 'application',
      port: 9,
      protocol: 'UDP/DTLS/SCTP',
      payloads: 'webrtc-datachannel',
      connection: { version: 4, ip: '0.0.0.0' },
      iceUfrag: t.ufrag,
      icePwd: t.pwd,
      fingerprint: { type: fp.hash, hash: fp.value },
      setup: fp.setup || 'actpass',
      mid: content.name,
      sctpPort: content.transport.sctpPort,
    };
  }

  /** The content names of the offer we answer (the base m-lines and the data channel). */
  get answeredContents() {
    return [...this.base.map((c) => c.name), ...(this.data ? [this.data.name] : [])];
  }

  #mline(content, mid, direction, track, withCandidates) {
    const d = content.description;
    const t = this.transport;
    const fp = t.fingerprints[0];
    const m = {
      type: d.media,
      port: 9,
      protocol: PROTOCOL,
      payloads: d.payloadTypes.map((p) => p.id).join(' '),
      connection: { version: 4, ip: '0.0.0.0' },
      rtcp: { port: 9, netType: 'IN', ipVer: 4, address: '0.0.0.0' },
      iceUfrag: t.ufrag,
      icePwd: t.pwd,
      fingerprint: { type: fp.hash, hash: fp.value },
      setup: fp.setup || 'actpass',
      mid,
      direction,
      rtp: d.payloadTypes.map((p) => {
        const rtp = { payload: p.id, codec: p.name, rate: p.clockrate };
        if (p.channels && p.channels > 1) rtp.encoding = p.channels;
        return rtp;
      }),
      fmtp: d.payloadTypes
        .filter((p) => Object.keys(p.parameters).length)
        .map((p) => ({ payload: p.id, config: fmtpConfig(p.parameters) })),
      rtcpFb: d.payloadTypes.flatMap((p) =>
        p.rtcpFb.map((fb) => (fb.subtype ? { payload: p.id, type: fb.type, subtype: fb.subtype } : { payload: p.id, type: fb.type })),
      ),
      ext: d.hdrExts.map((h) => ({ value: h.id, uri: h.uri })),
      rtcpMux: 'rtcp-mux',
    };
    if (d.extmapAllowMixed) m.extmapAllowMixed = 'extmap-allow-mixed';
    if (withCandidates) {
      m.candidates = [...t.candidates, ...this.extraCandidates].map(candidateToSdp);
      m.endOfCandidates = 'end-of-candidates';
    }
    if (track) {
      const stream = (track.endpoint ?? 'remote').replace(SAFE_ID, '_');
      const trackId = (track.name ?? `${stream}-${track.media}-${track.ssrcs[0]}`).replace(SAFE_ID, '_');
      m.msid = [{ id: stream, appdata: trackId }];
      m.ssrcs = track.ssrcs.flatMap((ssrc) => [
        { id: ssrc, attribute: 'cname', value: stream },
        { id: ssrc, attribute: 'msid', value: `${stream} ${trackId}` },
      ]);
      if (track.fid) m.ssrcGroups = [{ semantics: 'FID', ssrcs: track.fid.ssrcs.join(' ') }];
    }
    return m;
  }
}

function sessionIdOf(sid) {
  let h = 0;
  for (const ch of String(sid)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return h || 1;
}

/** A model candidate as an sdp-transform candidate. */
export function candidateToSdp(c) {
  const out = {
    foundation: c.foundation, component: c.component, transport: c.protocol, priority: c.priority,
    ip: c.ip, port: c.port, type: c.type, generation: c.generation ?? 0,
  };
  if (c.relAddr) Object.assign(out, { raddr: c.relAddr, rport: c.relPort });
  if (c.tcptype) out.tcptype = c.tcptype;
  return out;
}

/** An sdp-transform candidate as a model candidate. */
export function candidateFromSdp(c) {
  const out = {
    foundation: String(c.foundation), component: Number(c.component), protocol: String(c.transport).toLowerCase(),
    priority: Number(c.priority), ip: c.ip, port: Number(c.port), type: c.type, generation: Number(c.generation ?? 0),
  };
  if (c.raddr) Object.assign(out, { relAddr: c.raddr, relPort: Number(c.rport) });
  if (c.tcptype) out.tcptype = c.tcptype;
  return out;
}

/** `candidate:…` (RTCIceCandidate.candidate) as a model candidate; undefined for end-of-candidates. */
export function parseCandidateLine(line) {
  if (!line) return undefined;
  const parsed = sdpTransform.parse(`a=${line.replace(/^a=/, '')}\r\n`);
  const c = parsed.candidates?.[0];
  if (!c) throw new JingleError(`not an ICE candidate: ${line}`);
  return candidateFromSdp(c);
}

/** A model candidate as the `candidate:…` string RTCPeerConnection.addIceCandidate takes. */
export function candidateLine(c) {
  const s = sdpTransform.write({ candidates: [candidateToSdp(c)], media: [] });
  const line = s.split('\r\n').find((l) => l.startsWith('a=candidate:'));
  return line.slice(2);
}

/**
 * The browser's answer as the Jingle contents of a session-accept.
 * @param {string} answerSdp RTCPeerConnection.localDescription.sdp
 * @param {{contentNames: string[], owner: string, endpointId: string}} options contentNames: the
 *   offer's base contents (mids); owner: our occupant JID; endpointId: our MUC resource.
 */
export function answerToContents(answerSdp, { contentNames, owner, endpointId }) {
  const parsed = sdpTransform.parse(answerSdp);
  const sessionFp = parsed.fingerprint;
  const contents = [];
  const counters = { audio: 0, video: 0 };
  for (const m of parsed.media) {
    const mid = String(m.mid);
    if (!contentNames.includes(mid)) continue;
    const fp = m.fingerprint ?? sessionFp;
    if (!fp) throw new JingleError(`the answer has no DTLS fingerprint for ${mid}`);
    if (m.type === 'application') {
      contents.push({
        name: mid,
        creator: 'initiator',
        senders: 'both',
        transport: {
          ufrag: m.iceUfrag ?? parsed.iceUfrag,
          pwd: m.icePwd ?? parsed.icePwd,
          fingerprints: [{ hash: fp.type, setup: m.setup ?? parsed.setup ?? 'active', value: fp.hash }],
          candidates: [],
          sctpPort: Number(m.sctpPort ?? 5000),
        },
      });
      continue;
    }
    const ssrcIds = [...new Set((m.ssrcs ?? []).map((s) => Number(s.id)))];
    const groups = (m.ssrcGroups ?? []).map((g) => ({ semantics: g.semantics, ssrcs: g.ssrcs.split(' ').map(Number) }));
    const letter = m.type === 'audio' ? 'a' : 'v';
    const name = `${endpointId}-${letter}${counters[m.type] ?? 0}`;
    // Chrome names the stream and track with a media-level a=msid only (RFC 8830); Jitsi clients
    // need it on every source to make a remote track of it
    const firstMsid = Array.isArray(m.msid) ? m.msid[0] : null;
    const mediaMsid = firstMsid ? `${firstMsid.id} ${firstMsid.appdata}` : (typeof m.msid === 'string' ? m.msid : undefined);
    const sources = ssrcIds.map((ssrc) => {
      const msid = (m.ssrcs ?? []).find((s) => Number(s.id) === ssrc && s.attribute === 'msid')?.value ?? mediaMsid;
      const source = { ssrc, name, owner };
      if (msid) source.msid = msid;
      if (m.type === 'video') source.videoType = 'camera';
      return source;
    });
    if (sources.length && m.type in counters) counters[m.type] += 1;
    const payloadTypes = (m.rtp ?? []).map((r) => {
      const fmtp = (m.fmtp ?? []).find((f) => f.payload === r.payload);
      const pt = {
        id: r.payload, name: r.codec, clockrate: r.rate ?? 90000,
        parameters: fmtp ? fmtpParams(fmtp.config) : {},
        rtcpFb: (m.rtcpFb ?? [])
          .filter((f) => String(f.payload) === String(r.payload))
          .map((f) => (f.subtype ? { type: f.type, subtype: f.subtype } : { type: f.type })),
      };
      for (const [k, v] of Object.entries(pt.parameters)) pt.parameters[k] = String(v);
      if (r.encoding) pt.channels = Number(r.encoding);
      return pt;
    });
    contents.push({
      name: mid,
      creator: 'initiator',
      description: {
        media: m.type,
        payloadTypes,
        hdrExts: (m.ext ?? []).map((e) => ({ id: e.value, uri: e.uri })),
        rtcpMux: !!m.rtcpMux,
        extmapAllowMixed: !!(m.extmapAllowMixed ?? parsed.extmapAllowMixed),
        sources,
        ssrcGroups: groups,
      },
      transport: {
        ufrag: m.iceUfrag ?? parsed.iceUfrag,
        pwd: m.icePwd ?? parsed.icePwd,
        fingerprints: [{ hash: fp.type, setup: m.setup ?? parsed.setup ?? 'active', value: fp.hash }],
        candidates: (m.candidates ?? []).map(candidateFromSdp),
        rtcpMux: !!m.rtcpMux,
      },
    });
  }
  if (!contents.length) throw new JingleError('the answer has none of the offered contents');
  return contents;
}
