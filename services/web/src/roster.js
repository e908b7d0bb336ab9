// Who is in the meeting and what to show for them: the state behind the tiles. It is fed parsed
// presences, received tracks and bridge-channel events, and tells its listener what changed. No
// DOM, no network.

export class Roster {
  constructor(selfEndpoint) {
    this.selfEndpoint = selfEndpoint;
    /** @type {Map<string, {endpoint: string, nick: string, audioMuted: boolean, videoMuted: boolean,
     *  tracks: Map<string, any>, quality?: string}>} */
    this.people = new Map();
    this.dominant = null;
    /** Video sources the bridge forwards to us (ForwardedSources); null until it says. */
    this.forwarded = null;
    this.listeners = new Set();
    /** Endpoints sharing their screen, in the order they started. */
    this.screenOrder = [];
  }

  onChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  #emit(kind, endpoint) {
    for (const l of this.listeners) l(kind, endpoint, this.people.get(endpoint));
  }

  #person(endpoint, fields = {}) {
    let p = this.people.get(endpoint);
    if (!p) {
      p = { endpoint, nick: endpoint, audioMuted: false, videoMuted: false, tracks: new Map(), quality: undefined, ...fields };
      this.people.set(endpoint, p);
      this.#emit('joined', endpoint);
    }
    return p;
  }

  /** Apply a parsed MUC presence (see signalling/muc.js). Ours and the focus's are ignored. */
  applyPresence(presence) {
    const { endpoint } = presence;
    if (!endpoint || presence.isFocus || presence.isSelf || endpoint === this.selfEndpoint || presence.error) return;
    if (presence.unavailable) {
      this.remove(endpoint);
      return;
    }
    const fields = {
      nick: presence.nick, audioMuted: presence.audioMuted, videoMuted: presence.videoMuted,
      raisedHand: presence.raisedHand ?? null,
      moderator: presence.role === 'moderator' || presence.affiliation === 'owner',
    };
    const p = this.#person(endpoint, fields);
    const changed = Object.entries(fields).some(([k, v]) => p[k] !== v);
    Object.assign(p, fields);
    if (changed) this.#emit('updated', endpoint);
  }

  remove(endpoint) {
    this.screenOrder = this.screenOrder.filter((e) => e !== endpoint);
    if (!this.people.delete(endpoint)) return;
    if (this.dominant === endpoint) this.dominant = null;
    this.#emit('left', endpoint);
  }

  /** A remote track arrived for `endpoint` (kind 'audio'|'video'); `source`: its source name. */
  addTrack(endpoint, kind, track, source) {
    if (!endpoint || endpoint === this.selfEndpoint) return;
    const p = this.#person(endpoint);
    p.tracks.set(kind, track);
    p.interrupted = false; // newly negotiated media (e.g. after its session was restarted)
    if (kind === 'video' && source) p.videoSource = source;
    if (kind === 'screen') {
      p.screenSource = source ?? `${endpoint}-v1`;
      this.screenOrder = [...this.screenOrder.filter((e) => e !== endpoint), endpoint];
    }
    this.#emit('track', endpoint);
  }

  /** The camera source name of `endpoint` (as the offer named it, else the bridge's default). */
  videoSourceOf(endpoint) {
    return this.people.get(endpoint)?.videoSource ?? `${endpoint}-v0`;
  }

  /** Whether the bridge forwards `endpoint`'s video to us (true until it has said otherwise). */
  isForwarded(endpoint) {
    return this.forwarded === null || this.forwarded.has(this.videoSourceOf(endpoint));
  }

  /** ForwardedSources (a list of source names), or null when a new media session starts. */
  setForwarded(sources) {
    const before = new Map([...this.people.keys()].map((e) => [e, this.isForwarded(e)]));
    this.forwarded = sources === null ? null : new Set(sources);
    for (const [endpoint, was] of before) if (this.isForwarded(endpoint) !== was) this.#emit('updated', endpoint);
  }

  removeTrack(endpoint, kind) {
    const p = this.people.get(endpoint);
    if (kind === 'screen') this.screenOrder = this.screenOrder.filter((e) => e !== endpoint);
    if (p && p.tracks.delete(kind)) this.#emit('track', endpoint);
  }

  /** DominantSpeakerEndpointChangeEvent. */
  setDominantSpeaker(endpoint) {
    if (this.dominant === endpoint) return;
    const previous = this.dominant;
    this.dominant = endpoint;
    if (previous) this.#emit('speaker', previous);
    this.#emit('speaker', endpoint);
  }

  /** EndpointConnectivityStatusChangeEvent: whether the bridge receives `endpoint`'s media. */
  setConnectivity(endpoint, active) {
    const p = this.people.get(endpoint);
    if (!p || (p.interrupted ?? false) === !active) return;
    p.interrupted = !active;
    this.#emit('updated', endpoint);
  }

  setQuality(endpoint, quality) {
    const p = this.people.get(endpoint);
    if (!p || p.quality === quality) return;
    p.quality = quality;
    this.#emit('updated', endpoint);
  }

  get size() {
    return this.people.size;
  }
}
