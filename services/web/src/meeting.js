// One person's meeting: the I/O around the pure modules. It logs in over XMPP (WebSocket), asks
// the focus for the room, joins the MUC, answers the focus's Jingle offer with an
// RTCPeerConnection to the bridge, applies source-add/remove, and keeps the Colibri bridge channel
// open. It emits DOM events the page renders; everything it knows about people lives in `roster`.

import { $build, $iq, $msg, $pres, Strophe } from 'strophe.js';

import { BridgeChannel, chatFrom, ColibriClass, endpointStats, MAX_CHAT_TEXT, MAX_DISPLAY_NAME } from './bridge-channel.js';
import { encodingForConstraint, qualityLevel, summarizeStats } from './quality.js';
import { Roster } from './roster.js';
import { JingleGate, NS_JINGLE_ERRORS, RateLimitedLog } from './signalling/acceptance.js';
import { appendContents, isMove, NS, parseJingle } from './signalling/jingle.js';
import { appendServicesRequest, parseServices } from './signalling/extdisco.js';
import { appendConferenceRequest, appendPresence, parseConferenceResult, parsePresence } from './signalling/muc.js';
import { appendJibriRequest, parseJibriResult, parseRecordingStatus } from './signalling/recording.js';
import { answerToContents, candidateLine, parseCandidateLine, RemoteOffer } from './signalling/sdp.js';
import { preferCodec } from './signalling/codecs.js';
import {
  activeLayers, layerHeights, layerScales, offerRidSimulcast, Simulcast, signalRidSimulcast,
} from './signalling/simulcast.js';
import { detectBrowser } from './browser.js';
import { sameConstraints } from './video-constraints.js';
import { localSourceContents, SCREEN_MID, screenSourceIndex, screenSourceName, sourceVideoType, trackKind } from './screenshare.js';
import { ReactionLimiter, reactionMessage, reactionsFrom } from './reactions.js';

/** A failure the page explains to the user; `kind` picks the message. */
export class MeetingError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'MeetingError';
    this.kind = kind; // 'server' | 'focus' | 'room' | 'bridge' | 'media'
  }
}

function randomHex(n) {
  const bytes = new Uint8Array(Math.ceil(n / 2));
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('').slice(0, n);
}

const STATUS = Strophe.Status;
/** VP9 SVC: three spatial and three temporal layers, upper spatial layers predicted from lower
 * ones only at key pictures (W3C webrtc-svc). */
const SVC_MODE = 'L3T3_KEY';

export class Meeting extends EventTarget {
  /**
   * @param {object} config window.config (hosts, websocket, …)
   * @param {{room: string, displayName: string, stream: MediaStream|null}} options
   */
  constructor(config, { room, displayName, stream, auth = {}, codec = 'VP8', red = false }) {
    super();
    // the camera's codec (VP8 unless the page asks for VP9, sent with spatial and temporal
    // layers, or H264) and whether our audio goes out with RED (RFC 2198)
    this.codec = codec;
    this.red = red;
    // docs/authentication.md: {token} from ?jwt=, {jid, password} of an account, {guest: true}
    // for the guests' host; hooks asked when the room wants a password, has a lobby, or waits
    // for its host (auth.js, lobby.js)
    this.auth = auth;
    this.roomPassword = '';
    this.config = config;
    this.room = room;
    this.displayName = displayName;
    this.stream = stream;
    this.endpointId = randomHex(8);
    this.roomJid = `${room}@${config.hosts.muc}`;
    this.occupantJid = `${this.roomJid}/${this.endpointId}`;
    this.roster = new Roster(this.endpointId);
    this.audioMuted = !stream?.getAudioTracks().length;
    this.videoMuted = !stream?.getVideoTracks().length;
    this.conn = null;
    this.pc = null;
    this.offer = null;
    this.session = null; // {sid, from, initiator}
    this.signalledSid = null; // the session the focus's accepted Jingle has put us in (or is about to)
    // Jingle is taken from the focus only, and only for our session (signalling/acceptance.js)
    this.jingleGate = new JingleGate({
      roomJid: this.roomJid, focusNick: config.focusNick ?? 'focus', focusUserJid: config.focusUserJid,
    });
    this.rejectLog = new RateLimitedLog((m) => console.warn(m));
    this.jingleRejected = 0;
    this.channel = null;
    this.work = Promise.resolve();
    this.left = false;
    this.statsTimer = null;
    this.statsCounters = undefined;
    this.downlinkBps = undefined;
    this.quality = 'unknown';
    // SSRC-signalled simulcast of our camera (config.disableSimulcast turns it off)
    this.simulcast = config.disableSimulcast ? null : new Simulcast();
    // Firefox and Safari simulcast with RIDs instead (the same layers, signalled the standard way)
    this.ridSimulcast = !config.disableSimulcast && detectBrowser().simulcast === 'rid';
    if (this.ridSimulcast) this.simulcast = null;
    // VP9 sends its layers inside one stream (SVC), not as simulcast
    if (codec === 'VP9') {
      this.simulcast = null;
      this.ridSimulcast = false;
    }
    this.videoConstraints = null; // the ReceiverVideoConstraints the page wants
    this.sentConstraints = null; // … and what the current bridge channel was sent
    this.timings = { joinStarted: performance.now() };
    this.recording = null; // the focus's <jibri-recording-status/>, parsed
    this.screenTrack = null; // our screen share (getDisplayMedia), sent as <endpoint>-v1 (-v0 without a camera)
    this.screenName = null; // … the source name its source-add announced
    this.screenContents = null; // … and the Jingle contents its source-add announced
    this.raisedHand = null; // when we raised our hand (ms since the epoch), null when lowered
    this.reactionLimiter = new ReactionLimiter();
  }

  #emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #status(phase, text) {
    this.#emit('status', { phase, text });
  }

  // ------------------------------------------------------------------------------------- join

  async join() {
    this.#status('connecting', 'Connecting to the meeting server…');
    await this.#connect();
    this.conn.addHandler((el) => this.#onPresence(el), null, 'presence');
    this.conn.addHandler((el) => this.#onJingle(el), NS.JINGLE, 'iq', 'set');
    this.conn.addHandler((el) => this.#onGroupchat(el), null, 'message', 'groupchat');
    this.iceServers = await this.#externalServices();
    this.#status('focus', 'Setting up the room…');
    await this.#askFocus();
    this.#status('joining', 'Joining the room…');
    await this.#joinWithAuth();
    this.#status('waiting-media', 'Waiting for the media bridge…');
    const mediaTimeoutMs = this.config.mediaTimeoutMs ?? 15000;
    this.mediaTimer = setTimeout(() => {
      if (!this.session && !this.left) {
        this.#emit('failure', new MeetingError('bridge',
          'No media bridge is available right now: you can see who is here, but not hear or see them.'));
      }
    }, mediaTimeoutMs);
  }

  /** The MUC join, through a password prompt, the lobby, or waiting for the host (auth hooks). */
  async #joinWithAuth() {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#joinMuc();
        return;
      } catch (e) {
        const refusal = e.refusal;
        if (!refusal || this.left || attempt > 1000) throw e;
        if (refusal.condition === 'not-authorized' && /host/i.test(refusal.text) && this.auth.onWaitForHost) {
          await this.auth.onWaitForHost(refusal.text);
        } else if (refusal.condition === 'not-authorized' && this.auth.onPassword) {
          const password = await this.auth.onPassword(attempt > 0);
          if (password == null) throw e;
          this.roomPassword = password;
        } else if (refusal.condition === 'registration-required' && refusal.lobbyroom && this.auth.onLobby) {
          await this.auth.onLobby(this.conn, refusal.lobbyroom, this.roomPassword);
        } else {
          throw e;
        }
      }
    }
  }

  #connect() {
    const { hosts } = this.config;
    const token = this.auth.token;
    // Jitsi's clients carry the token as ?token= on the XMPP URL (the broker checks it at login)
    const websocket = token ? `${this.config.websocket}?token=${encodeURIComponent(token)}` : this.config.websocket;
    const timeoutMs = this.config.connectTimeoutMs ?? 8000;
    return new Promise((resolve, reject) => {
      const conn = new Strophe.Connection(websocket);
      this.conn = conn;
      let settled = false;
      const fail = (why) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try {
          conn.reset();
        } catch {
          // nothing to reset
        }
        reject(new MeetingError('server', why));
      };
      const timer = setTimeout(() => {
        fail(`The meeting server did not answer within ${Math.round(timeoutMs / 1000)} s.`);
        conn.disconnect('timeout');
      }, timeoutMs);
      const login = this.auth.jid ? this.auth.jid : (this.auth.guest && hosts.anonymousdomain) || hosts.domain;
      conn.connect(login, this.auth.password ?? null, (status, condition, elem) => {
        const broken = [STATUS.CONNFAIL, STATUS.ERROR, STATUS.CONNTIMEOUT, STATUS.DISCONNECTED].includes(status);
        if (status === STATUS.CONNECTED) {
          if (settled) return;
          settled = true;
          this.everConnected = true;
          clearTimeout(timer);
          resolve();
        } else if (status === STATUS.AUTHFAIL) {
          // the broker names its reason (an expired token, a wrong password…) in the SASL failure
          const reason = elem?.getElementsByTagName?.('text')?.[0]?.textContent || condition || '';
          this.authFailure = reason;
          fail(`The meeting server refused the login${reason ? `: ${reason}` : ''}.`);
        } else if (broken && !settled) {
          console.warn('xmpp connection failed:', condition);
          fail('Cannot reach the meeting server. Check your network connection and try again.');
        } else if (broken && this.everConnected && !this.left && !this.connectionLost) {
          this.connectionLost = true;
          console.warn('xmpp connection lost:', condition);
          this.#emit('failure', new MeetingError('server', 'Lost the connection to the meeting server.'));
        }
      });
    });
  }

  /** STUN/TURN servers from the XMPP server (XEP-0215); none when it offers none or is slow. */
  async #externalServices() {
    const iq = appendServicesRequest($iq({ to: this.config.hosts.domain, type: 'get' }));
    try {
      const result = await new Promise((resolve, reject) => this.conn.sendIQ(iq, resolve, reject, 5000));
      return parseServices(result);
    } catch {
      return [];
    }
  }

  async #askFocus() {
    const focus = this.config.hosts.focus;
    for (let attempt = 0; attempt < 10; attempt++) {
      const iq = $iq({ to: focus, type: 'set' });
      appendConferenceRequest(iq, { roomJid: this.roomJid, machineUid: this.endpointId });
      let result;
      try {
        result = await new Promise((resolve, reject) => this.conn.sendIQ(iq, resolve, reject, 10000));
      } catch (el) {
        const why = el ? el.querySelector?.('error > *')?.localName ?? 'no answer' : 'no answer';
        throw new MeetingError('focus', `The conference service is unavailable (${why}).`);
      }
      if (parseConferenceResult(result).ready) return;
      await new Promise((r) => setTimeout(r, 1000));
    }
    throw new MeetingError('focus', 'The conference service did not get the room ready.');
  }

  #joinMuc() {
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      this.joinWaiter = waiter;
      this.#sendPresence(true);
      setTimeout(() => {
        // (only this attempt's: a retry after a password or the lobby has its own)
        if (this.joinWaiter === waiter) {
          this.joinWaiter = null;
          reject(new MeetingError('room', 'Joining the room timed out.'));
        }
      }, 10000);
    });
  }

  #sendPresence(join = false) {
    const pres = $pres({ to: this.occupantJid });
    appendPresence(pres, {
      nick: this.displayName, audioMuted: this.audioMuted, videoMuted: this.videoMuted,
      statsId: `${this.displayName}-${this.endpointId}`, join, raisedHand: this.raisedHand,
      sourceInfo: this.#sourceInfo(),
    });
    if (join && this.roomPassword) {
      const x = [...pres.tree().children].find((c) => c.localName === 'x');
      if (x) x.appendChild($build('password').t(this.roomPassword).tree());
    }
    this.conn.send(pres.tree());
  }

  /** Jitsi's <SourceInfo> presence: each source's mute state and video type. */
  #sourceInfo() {
    const info = {
      [`${this.endpointId}-a0`]: { muted: !!this.audioMuted },
      [`${this.endpointId}-v0`]: { muted: !!this.videoMuted, videoType: 'camera' },
    };
    // without a camera the screen is `-v0` itself (screenshare.js)
    if (this.screenTrack) info[this.#screenSourceName()] = { muted: false, videoType: 'desktop' };
    return info;
  }

  /**
   * Our screen share's source name: `-v1` beside a camera we send, `-v0` when we send none (as
   * lib-jitsi-meet and the bridge number an endpoint's video sources).
   */
  #screenSourceName() {
    if (this.screenName) return this.screenName;
    const mids = this.offer?.base.filter((c) => c.description.media === 'video').map((c) => c.name) ?? [];
    const fallback = this.stream?.getVideoTracks().length ? 1 : 0;
    return screenSourceName(this.endpointId, screenSourceIndex(this.pc?.localDescription?.sdp, mids, fallback));
  }

  // Chat is MUC groupchat (XEP-0045 section 7.4), as Jitsi clients send it; our own messages
  // come back from the room and are shown when sent, so the echo is skipped.
  #onGroupchat(el) {
    const from = el.getAttribute('from') ?? '';
    if (!from.startsWith(`${this.roomJid}/`)) return true;
    const nick = from.slice(this.roomJid.length + 1);
    const body = [...el.children].find((c) => c.tagName === 'body')?.textContent ?? '';
    const delayed = [...el.children].some((c) => c.tagName === 'delay');
    if (!body || nick === this.endpointId || delayed) return true;
    const person = this.roster.people.get(nick);
    const named = [...el.children].find((c) => c.tagName === 'nick')?.textContent;
    const displayName = (person?.nick ?? named ?? nick).slice(0, MAX_DISPLAY_NAME);
    this.#emit('chat', { from: nick, text: body.slice(0, MAX_CHAT_TEXT), displayName, mine: false });
    return true;
  }

  #onPresence(el) {
    const from = el.getAttribute('from') ?? '';
    if (!from.startsWith(`${this.roomJid}/`)) return true;
    const p = parsePresence(el, { focusUser: this.config.focusUserJid });
    if (p.endpoint === this.endpointId) {
      if (p.error && this.joinWaiter) {
        const errorEl = [...el.children].find((c) => c.localName === 'error');
        const text = errorEl ? [...errorEl.children].find((c) => c.localName === 'text')?.textContent ?? '' : '';
        const lobbyroom = errorEl ? [...errorEl.children].find((c) => c.localName === 'lobbyroom')?.textContent : undefined;
        const failure = new MeetingError('room', `The room refused us (${p.error}${text ? `: ${text}` : ''}).`);
        failure.refusal = { condition: p.error, text, lobbyroom };
        this.joinWaiter.reject(failure);
        this.joinWaiter = null;
      } else if (!p.error && this.joinWaiter) {
        this.joinWaiter.resolve();
        this.joinWaiter = null;
      }
      return true;
    }
    if (p.isFocus && !p.unavailable) {
      const recording = parseRecordingStatus(el);
      if (recording) {
        this.recording = recording;
        this.#emit('recording', recording);
      }
    }
    this.roster.applyPresence(p);
    return true;
  }

  // -------------------------------------------------------------------------------- recording

  /**
   * Ask the focus to start (mode 'file' or 'stream' with an RTMP URL or key) or stop recording.
   * Resolves with the focus's answer ({status, sessionId}); rejects with its error text.
   */
  async #jibri(request) {
    const iq = $iq({ to: `${this.roomJid}/focus`, type: 'set' });
    appendJibriRequest(iq, request);
    return new Promise((resolve, reject) => this.conn.sendIQ(iq.tree(), (result) => resolve(parseJibriResult(result)), (error) => {
      const text = error?.getElementsByTagName?.('text')?.[0]?.textContent;
      reject(new Error(text || 'The recording service refused the request.'));
    }, 20000));
  }

  startRecording(mode = 'file', streamId = undefined) {
    return this.#jibri({ action: 'start', mode, streamId });
  }

  stopRecording() {
    return this.#jibri({ action: 'stop', sessionId: this.recording?.sessionId });
  }

  // ----------------------------------------------------------------------------------- jingle

  #onJingle(iq) {
    const from = iq.getAttribute('from');
    const id = iq.getAttribute('id');
    let jingle;
    try {
      jingle = parseJingle(iq);
    } catch (e) {
      this.#jingleError(from, id, { type: 'modify', condition: 'bad-request', text: e.message }, `dropped a Jingle stanza from ${from}: ${e.message}`);
      return true;
    }
    // Checked on arrival, against the session the focus has signalled so far (the queued
    // session-initiate may not have been applied yet when its first source-add arrives).
    const signalled = this.signalledSid ? { sid: this.signalledSid } : null;
    const refusal = this.jingleGate.check({ from, action: jingle.action, sid: jingle.sid }, signalled);
    if (refusal) {
      this.#jingleError(from, id, refusal, `refused Jingle ${jingle.action} (sid ${jingle.sid}) from ${from}: ${refusal.condition}`);
      return true;
    }
    if (jingle.action === 'session-initiate') this.signalledSid = jingle.sid;
    else if (jingle.action === 'session-terminate') this.signalledSid = null;
    this.conn.send($iq({ type: 'result', to: from, id }).tree());
    this.#enqueue(() => this.#handleJingle(jingle, from));
    return true;
  }

  /** Answer a Jingle IQ we do not act on with an error (RFC 6120 section 8.3), log it rate-limited. */
  #jingleError(from, id, { type, condition, jingleCondition, text }, logLine) {
    this.jingleRejected += 1;
    this.rejectLog.warn(`${condition}:${from}`, logLine);
    if (!from) return;
    const reply = $iq({ type: 'error', to: from, id }).c('error', { type })
      .c(condition, { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }).up();
    if (jingleCondition) reply.c(jingleCondition, { xmlns: NS_JINGLE_ERRORS }).up();
    if (text) reply.c('text', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }).t(text.slice(0, 200));
    this.conn.send(reply.tree());
  }

  #enqueue(task) {
    this.work = this.work.then(task).catch((e) => {
      console.error('signalling failed:', e);
      this.#emit('failure', e instanceof MeetingError ? e : new MeetingError('bridge', `Media setup failed: ${e.message}`));
    });
  }

  async #handleJingle(jingle, from) {
    if (jingle.action !== 'session-initiate' && jingle.sid !== this.session?.sid) {
      console.warn(`ignoring ${jingle.action} for session ${jingle.sid} (ours: ${this.session?.sid})`);
      return undefined;
    }
    switch (jingle.action) {
      case 'session-initiate':
        return this.#accept(jingle, from);
      case 'source-add':
        if (!this.offer) return undefined;
        this.offer.addSources(jingle);
        return this.#renegotiate();
      case 'source-remove': {
        if (!this.offer) return undefined;
        for (const t of this.offer.removeSources(jingle)) this.roster.removeTrack(t.endpoint, trackKind(t));
        return this.#renegotiate();
      }
      case 'transport-info': {
        if (!this.pc) return undefined;
        for (const c of jingle.contents) {
          for (const cand of c.transport?.candidates ?? []) {
            this.offer.addCandidates([cand]);
            await this.pc.addIceCandidate({ candidate: candidateLine(cand), sdpMid: this.offer.base[0].name });
          }
        }
        return undefined;
      }
      case 'session-terminate':
        this.#closeMedia();
        this.session = null;
        if (isMove(jingle)) this.#status('moving', 'Moving you to another media bridge…');
        else if (!this.left) this.#emit('failure', new MeetingError('bridge', 'The media session was ended by the server.'));
        return undefined;
      default:
        return undefined;
    }
  }

  async #accept(jingle, from) {
    clearTimeout(this.mediaTimer);
    this.#closeMedia();
    this.session = { sid: jingle.sid, from, initiator: jingle.initiator };
    this.offer = new RemoteOffer(jingle, { localOwner: this.occupantJid });
    const pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
      iceServers: this.iceServers ?? [],
      // config.forceTurnRelay: media only through TURN (jitsi-meet's option of the same name)
      iceTransportPolicy: this.config.forceTurnRelay ? 'relay' : 'all',
    });
    this.pc = pc;
    // the bridge opens the data channel (focus `enable-sctp`); it carries the bridge channel
    pc.ondatachannel = (event) => {
      this.dataChannel = event.channel;
      this.channel?.useDataChannel(event.channel);
    };
    pc.ontrack = (event) => {
      const track = this.offer?.trackForMid(event.transceiver.mid);
      if (track?.endpoint) {
        this.roster.addTrack(track.endpoint, trackKind(track), event.track, track.name);
      }
    };
    pc.oniceconnectionstatechange = () => {
      const state = pc.iceConnectionState;
      this.#emit('media-state', { state });
      if (state === 'failed') this.#iceFailed();
      if (state === 'connected' || state === 'completed') {
        this.iceFailures = 0;
        this.#status('joined', '');
      }
    };
    if (this.screenTrack) this.offer.addLocalSlot(SCREEN_MID); // sharing across a bridge move
    await pc.setRemoteDescription({ type: 'offer', sdp: this.#remoteOffer() });
    for (const transceiver of pc.getTransceivers()) {
      const kind = transceiver.receiver.track.kind;
      if (transceiver.mid === SCREEN_MID && this.screenTrack) {
        await transceiver.sender.replaceTrack(this.screenTrack);
        transceiver.direction = 'sendonly';
        continue;
      }
      const base = this.offer.base.find((c) => c.name === transceiver.mid);
      if (!base || !this.stream) continue;
      const local = kind === 'audio' ? this.stream.getAudioTracks()[0] : this.stream.getVideoTracks()[0];
      if (!local) continue;
      await transceiver.sender.replaceTrack(local);
      transceiver.sender.setStreams?.(this.stream);
      transceiver.direction = 'sendonly';
      this.#preferCodecs(transceiver, kind);
      if (kind === 'video') await this.#scaleRidLayers(transceiver.sender);
    }
    await pc.setLocalDescription(await this.#localAnswer(pc));
    await this.#svcLayers(pc);
    // The bridge is ICE-lite and learns our address from our checks: do not hold the answer back
    // for slow interfaces; candidates found later go out as transport-info.
    await this.#gathered(pc, 250);
    const signalled = this.ridSimulcast ? signalRidSimulcast(pc.localDescription.sdp) : pc.localDescription.sdp;
    const contents = answerToContents(signalled, {
      contentNames: this.offer.answeredContents, owner: this.occupantJid, endpointId: this.endpointId,
    });
    const iq = $iq({ to: from, type: 'set' }).c('jingle', {
      xmlns: NS.JINGLE, action: 'session-accept', sid: jingle.sid, initiator: jingle.initiator ?? from,
      responder: this.conn.jid,
    });
    appendContents(iq, contents, { bundle: contents.map((c) => c.name) });
    await new Promise((resolve, reject) => this.conn.sendIQ(iq.tree(), resolve, () => reject(new MeetingError('bridge', 'The focus rejected our media answer.')), 10000));
    // Candidates the answer did not carry (found while it was on its way) follow as transport-info.
    this.sentCandidates = new Set(contents.flatMap((c) => c.transport.candidates.map(candidateLine)));
    pc.onicecandidate = (event) => this.#trickle(event.candidate?.candidate);
    for (const line of pc.localDescription.sdp.split('\r\n')) {
      if (line.startsWith('a=candidate:')) this.#trickle(line.slice(2));
    }
    this.#openChannel(this.offer.webSocketUrl, !!this.offer.data);
    this.#startStats();
    if (this.screenTrack) this.#announceScreen();
  }

  /** Tell the focus (it re-invites us, maybe onto another bridge); give up after a few tries. */
  #iceFailed() {
    this.iceFailures = (this.iceFailures ?? 0) + 1;
    if (this.iceFailures > 2 || !this.session) {
      this.#emit('failure', new MeetingError('bridge', 'Cannot reach the media bridge: audio and video are unavailable.'));
      return;
    }
    this.#status('reconnecting-media', 'Reconnecting audio and video…');
    const iq = $iq({ to: this.session.from, type: 'set' })
      .c('jingle', { xmlns: NS.JINGLE, action: 'session-info', sid: this.session.sid })
      .c('ice-state', { xmlns: NS.FOCUS }).t('failed');
    this.conn.sendIQ(iq.tree(), () => {}, () => {}, 10000);
  }

  #gathered(pc, timeoutMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === 'complete') {
          pc.removeEventListener('icegatheringstatechange', done);
          resolve();
        }
      };
      pc.addEventListener('icegatheringstatechange', done);
      setTimeout(resolve, timeoutMs);
    });
  }

  #trickle(line) {
    if (!line || !this.session || !this.pc) return;
    let cand;
    try {
      cand = parseCandidateLine(line);
    } catch {
      return;
    }
    const key = candidateLine(cand);
    if (this.sentCandidates.has(key)) return;
    this.sentCandidates.add(key);
    const base = this.offer.base[0];
    const iq = $iq({ to: this.session.from, type: 'set' }).c('jingle', {
      xmlns: NS.JINGLE, action: 'transport-info', sid: this.session.sid, initiator: this.session.initiator ?? this.session.from,
    });
    const local = answerToContents(this.pc.localDescription.sdp, {
      contentNames: [base.name], owner: this.occupantJid, endpointId: this.endpointId,
    })[0].transport;
    appendContents(iq, [{ name: base.name, creator: 'initiator', transport: { ...local, candidates: [cand] } }]);
    this.conn.sendIQ(iq.tree(), () => {}, () => {}, 10000);
  }

  async #renegotiate() {
    const pc = this.pc;
    if (!pc) return;
    await pc.setRemoteDescription({ type: 'offer', sdp: this.#remoteOffer() });
    await pc.setLocalDescription(await this.#localAnswer(pc));
  }

  /** The focus's offer as SDP, our codecs first on our own m-lines; for RID simulcast, asking for
   * our camera's layers. */
  #remoteOffer() {
    let sdp = this.offer.toSdp();
    if (this.codec !== 'VP8') sdp = preferCodec(sdp, ['video'], this.codec);
    if (this.red) sdp = preferCodec(sdp, ['audio'], 'red');
    if (!this.ridSimulcast) return sdp;
    return offerRidSimulcast(sdp, this.offer.base.filter((c) => c.description.media === 'video').map((c) => c.name));
  }

  /** RID simulcast: the layers the offer asked for, scaled 1/4, 1/2 and 1 (low to high). */
  async #scaleRidLayers(sender) {
    if (!this.ridSimulcast) return;
    const params = sender.getParameters();
    const encodings = params.encodings ?? [];
    if (encodings.length < 2) return;
    const scales = layerScales(encodings.length);
    if (encodings.every((e, i) => e.scaleResolutionDownBy === scales[i])) return;
    encodings.forEach((e, i) => (e.scaleResolutionDownBy = scales[i]));
    try {
      await sender.setParameters(params);
    } catch (e) {
      console.warn('simulcast layers not scaled:', e.message);
    }
  }

  /** Our codec first in the answer of a sending transceiver (the others stay, for receiving). */
  #preferCodecs(transceiver, kind) {
    const wanted = kind === 'video' ? (this.codec === 'VP8' ? null : `video/${this.codec}`) : (this.red ? 'audio/red' : null);
    const caps = typeof RTCRtpSender.getCapabilities === 'function' ? RTCRtpSender.getCapabilities(kind) : null;
    if (!wanted || !caps || typeof transceiver.setCodecPreferences !== 'function') return;
    const rank = (c) => {
      if (c.mimeType.toLowerCase() !== wanted.toLowerCase()) return 2;
      // H.264: the offer's constrained baseline, packetization-mode 1
      if (wanted === 'video/H264') return /profile-level-id=42e01f/.test(c.sdpFmtpLine ?? '') && /packetization-mode=1/.test(c.sdpFmtpLine ?? '') ? 0 : 1;
      return 0;
    };
    const codecs = [...caps.codecs].sort((a, b) => rank(a) - rank(b));
    try {
      transceiver.setCodecPreferences(codecs);
    } catch (e) {
      console.warn(`${wanted} not preferred:`, e.message);
    }
  }

  /** VP9: our camera sends three spatial and three temporal layers in one stream (L3T3_KEY). */
  async #svcLayers(pc) {
    if (this.codec !== 'VP9') return;
    const sender = pc.getTransceivers().find((t) => t.mid === 'video')?.sender;
    if (!sender?.track) return;
    const params = sender.getParameters();
    if (!params.encodings?.length || params.encodings[0].scalabilityMode === SVC_MODE) return;
    params.encodings[0].scalabilityMode = SVC_MODE;
    try {
      await sender.setParameters(params);
    } catch (e) {
      console.warn('VP9 layers not set:', e.message);
    }
  }

  /** The browser's answer, with our camera's simulcast layers added (the same on every call). */
  async #localAnswer(pc) {
    const answer = await pc.createAnswer();
    if (!this.simulcast || !this.offer) return answer;
    const mids = this.offer.base.filter((c) => c.description.media === 'video').map((c) => c.name);
    return { type: 'answer', sdp: this.simulcast.munge(answer.sdp, mids) };
  }

  // ---------------------------------------------------------------------------- bridge channel

  #openChannel(url, withDataChannel) {
    this.channel?.close();
    this.channel = null;
    if (!url && !withDataChannel) {
      this.#emit('channel', { state: 'unavailable' });
      return;
    }
    this.channel = new BridgeChannel(url, {
      onMessage: (msg) => this.#onBridgeMessage(msg),
      onState: (state, detail) => this.#emit('channel', { state, ...detail }),
    }).open();
    if (this.dataChannel && this.dataChannel.readyState !== 'closed') this.channel.useDataChannel(this.dataChannel);
    if (this.screenTrack) this.channel.send(sourceVideoType(this.#screenSourceName(), 'desktop'));
    this.sentConstraints = null;
    if (this.videoConstraints) this.setReceiverVideoConstraints(this.videoConstraints);
  }

  /**
   * What video we want from the bridge (a complete ReceiverVideoConstraints, see
   * video-constraints.js); sent when it differs from what this bridge channel last got, and again
   * to every new bridge channel.
   */
  setReceiverVideoConstraints(msg) {
    this.videoConstraints = msg;
    if (!this.channel || sameConstraints(msg, this.sentConstraints)) return false;
    this.channel.send(msg);
    this.sentConstraints = msg;
    return true;
  }

  #onBridgeMessage(msg) {
    switch (msg.colibriClass) {
      case ColibriClass.DOMINANT_SPEAKER:
        this.roster.setDominantSpeaker(msg.dominantSpeakerEndpoint === this.endpointId ? this.endpointId : msg.dominantSpeakerEndpoint);
        this.#emit('speaker', { endpoint: msg.dominantSpeakerEndpoint });
        break;
      case ColibriClass.ENDPOINT_CONNECTIVITY:
        if (typeof msg.endpoint === 'string') this.roster.setConnectivity(msg.endpoint, String(msg.active) !== 'false');
        break;
      case ColibriClass.ENDPOINT_MESSAGE: {
        const reaction = reactionsFrom(msg);
        if (reaction && reaction.from && reaction.from !== this.endpointId && this.reactionLimiter.allow(reaction.from)) {
          this.#emit('reaction', { ...reaction, mine: false });
          break;
        }
        const chat = chatFrom(msg);
        if (chat && chat.from !== this.endpointId) {
          const person = this.roster.people.get(chat.from);
          this.#emit('chat', { ...chat, displayName: person?.nick ?? chat.displayName ?? chat.from, mine: false });
        }
        break;
      }
      case ColibriClass.ENDPOINT_STATS:
        if (msg.from && typeof msg.connectionQuality === 'string') this.roster.setQuality(msg.from, msg.connectionQuality);
        break;
      case ColibriClass.SENDER_SOURCE_CONSTRAINTS:
        if (msg.sourceName === `${this.endpointId}-v0` && typeof msg.maxHeight === 'number') {
          this.#constrainCamera(msg.maxHeight).catch((e) => console.warn('sender constraint not applied:', e.message));
        }
        break;
      case ColibriClass.FORWARDED_SOURCES:
        if (Array.isArray(msg.forwardedSources)) {
          this.forwardedSources = msg.forwardedSources;
          this.roster.setForwarded(msg.forwardedSources);
        }
        break;
      case ColibriClass.CONNECTION_STATS:
        if (typeof msg.estimatedDownlinkBandwidth === 'number') this.downlinkBps = msg.estimatedDownlinkBandwidth;
        break;
      case ColibriClass.ERROR:
        this.rejectLog.warn('bridge-error', `the bridge refused a message: ${String(msg.field ?? '')} ${String(msg.reason ?? '')}`.slice(0, 300));
        break;
      default:
        break;
    }
  }

  /** Follow the bridge's SenderSourceConstraints for our camera (pause it when nobody watches). */
  async #constrainCamera(maxHeight) {
    const sender = this.#baseSender('video');
    if (!sender?.track) return;
    const params = sender.getParameters();
    if (params.encodings?.length > 1) {
      // simulcast: keep the layers someone receives, stop the others
      const wanted = activeLayers(maxHeight, layerHeights(sender.track.getSettings().height ?? 720, params.encodings.length));
      if (params.encodings.every((e, i) => e.active === wanted[i])) return;
      params.encodings.forEach((e, i) => (e.active = wanted[i]));
      await sender.setParameters(params);
      return;
    }
    const { active, scaleResolutionDownBy } = encodingForConstraint(maxHeight, sender.track.getSettings().height);
    if (!params.encodings?.length) return;
    const current = params.encodings[0];
    if (current.active === active && (current.scaleResolutionDownBy ?? 1) === scaleResolutionDownBy) return;
    Object.assign(current, { active, scaleResolutionDownBy });
    if (this.codec === 'VP9') current.scalabilityMode = SVC_MODE; // kept whatever was read
    await sender.setParameters(params);
  }

  sendChat(text) {
    const body = text.trim();
    if (!body) return false;
    if (!this.conn?.connected) throw new MeetingError('bridge', 'Chat is not connected yet.');
    this.conn.send($msg({ to: this.roomJid, type: 'groupchat' }).c('body').t(body).up()
      .c('nick', { xmlns: 'http://jabber.org/protocol/nick' }).t(this.displayName ?? ''));
    this.#emit('chat', { from: this.endpointId, text: body, displayName: this.displayName, mine: true });
    return true;
  }

  // ------------------------------------------------------------------------------ controls

  /** The sender of our own camera or microphone (the offer's first m-line of that media). */
  #baseSender(kind) {
    const mid = this.offer?.base.find((c) => c.description.media === kind)?.name;
    return this.pc?.getTransceivers().find((t) => t.mid === mid)?.sender ?? null;
  }

  /**
   * Use another camera or microphone (a device chosen in the settings): the new track replaces
   * the old one in our stream and on the peer connection (no renegotiation), keeping mute state.
   */
  async replaceLocalTrack(track) {
    const kind = track.kind;
    if (!this.stream) this.stream = new MediaStream();
    const old = kind === 'audio' ? this.stream.getAudioTracks() : this.stream.getVideoTracks();
    track.enabled = !(kind === 'audio' ? this.audioMuted : this.videoMuted);
    const sender = this.#baseSender(kind);
    if (sender) await sender.replaceTrack(track);
    for (const t of old) {
      this.stream.removeTrack(t);
      t.stop();
    }
    this.stream.addTrack(track);
  }

  /** Share the screen (getDisplayMedia) as our next video source, `<endpoint>-v1` (`-v0` without a camera). */
  async startScreenShare() {
    if (this.screenTrack) return;
    const display = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
    const track = display.getVideoTracks()[0];
    if (!track) throw new MeetingError('media', 'The browser shared no screen.');
    if ('contentHint' in track) track.contentHint = 'detail'; // sharp text over frame rate
    this.screenTrack = track;
    track.addEventListener('ended', () => this.stopScreenShare());
    this.#emit('screen', { on: true, track });
    if (this.conn?.connected && !this.connectionLost) this.#sendPresence();
    this.#enqueue(() => this.#attachScreen());
  }

  async #attachScreen() {
    const pc = this.pc;
    if (!pc || !this.offer || !this.screenTrack) return; // sent once the session starts
    if (this.offer.addLocalSlot(SCREEN_MID)) {
      // #remoteOffer: with RID simulcast the offer keeps asking for our camera's layers
      await pc.setRemoteDescription({ type: 'offer', sdp: this.#remoteOffer() });
      const transceiver = pc.getTransceivers().find((t) => t.mid === SCREEN_MID);
      await transceiver.sender.replaceTrack(this.screenTrack);
      transceiver.direction = 'sendonly';
      await pc.setLocalDescription(await this.#localAnswer(pc));
    } else {
      await pc.getTransceivers().find((t) => t.mid === SCREEN_MID)?.sender.replaceTrack(this.screenTrack);
    }
    this.#announceScreen();
  }

  /** source-add our screen to the focus (which tells the others and the bridge). */
  #announceScreen() {
    if (!this.session || !this.pc?.localDescription) return;
    this.screenName = null; // named again for this answer (a bridge move may have changed it)
    const name = this.#screenSourceName();
    const contents = localSourceContents(this.pc.localDescription.sdp, SCREEN_MID, {
      owner: this.occupantJid, name, videoType: 'desktop',
    });
    if (!contents.length) return;
    this.screenName = name;
    this.screenContents = contents;
    this.#sourceUpdate('source-add', contents);
    this.channel?.send(sourceVideoType(name, 'desktop'));
    if (this.conn?.connected && !this.connectionLost) this.#sendPresence(); // SourceInfo with that name
  }

  #sourceUpdate(action, contents) {
    const iq = $iq({ to: this.session.from, type: 'set' }).c('jingle', {
      xmlns: NS.JINGLE, action, sid: this.session.sid, initiator: this.session.initiator ?? this.session.from,
    });
    appendContents(iq, contents);
    this.conn.sendIQ(iq.tree(), () => {}, () => console.warn(`the focus refused our ${action}`), 10000);
  }

  stopScreenShare() {
    const track = this.screenTrack;
    if (!track) return;
    this.screenTrack = null;
    track.stop();
    this.#emit('screen', { on: false });
    if (this.conn?.connected && !this.connectionLost) this.#sendPresence();
    this.#enqueue(async () => {
      await this.pc?.getTransceivers().find((t) => t.mid === SCREEN_MID)?.sender.replaceTrack(null);
      if (this.screenContents && this.session) this.#sourceUpdate('source-remove', this.screenContents);
      this.screenContents = null;
      if (this.screenName) this.channel?.send(sourceVideoType(this.screenName, 'none'));
      this.screenName = null;
    });
  }

  /** Raise or lower our hand (Jitsi's <jitsi_participant_raisedHand> presence). */
  setRaisedHand(raised) {
    this.raisedHand = raised ? Date.now() : null;
    if (this.conn?.connected && !this.connectionLost) this.#sendPresence();
  }

  /** Send a reaction ('like', 'clap', …) to everyone; false when there is no bridge channel. */
  sendReaction(name) {
    if (!this.channel) return false;
    this.channel.send(reactionMessage([name]));
    this.#emit('reaction', { from: this.endpointId, reactions: [name], mine: true });
    return true;
  }

  setAudioMuted(muted) {
    this.audioMuted = muted;
    for (const t of this.stream?.getAudioTracks() ?? []) t.enabled = !muted;
    if (this.conn?.connected && !this.connectionLost) this.#sendPresence();
  }

  setVideoMuted(muted) {
    this.videoMuted = muted;
    for (const t of this.stream?.getVideoTracks() ?? []) t.enabled = !muted;
    if (this.conn?.connected && !this.connectionLost) this.#sendPresence();
  }

  leave() {
    if (this.left) return;
    this.left = true;
    clearInterval(this.statsTimer);
    clearTimeout(this.mediaTimer);
    this.#closeMedia();
    this.screenTrack?.stop();
    this.screenTrack = null;
    if (this.conn?.connected && !this.connectionLost) {
      try {
        this.conn.send($pres({ to: this.occupantJid, type: 'unavailable' }).tree());
        this.conn.flush();
        this.conn.disconnect('leaving');
      } catch (e) {
        console.warn('leaving: the connection is already gone:', e.message);
      }
    }
  }

  #closeMedia() {
    this.channel?.close();
    this.channel = null;
    this.dataChannel = null;
    if (this.pc) {
      this.pc.ondatachannel = null;
      this.pc.onicecandidate = null;
      this.pc.oniceconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this.offer = null;
    this.sentConstraints = null;
    this.forwardedSources = null;
    this.roster.setForwarded(null);
    for (const p of this.roster.people.values()) for (const kind of [...p.tracks.keys()]) this.roster.removeTrack(p.endpoint, kind);
  }

  // ------------------------------------------------------------------------------- stats

  #startStats() {
    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => this.#sampleStats(), 2000);
  }

  async #sampleStats() {
    const pc = this.pc;
    if (!pc) return;
    const report = await pc.getStats();
    const summary = summarizeStats(report.values(), this.statsCounters);
    this.statsCounters = summary.counters;
    const connected = ['connected', 'completed'].includes(pc.iceConnectionState);
    const level = qualityLevel({ rttMs: summary.rttMs, lossRatio: summary.lossRatio, downlinkBps: this.downlinkBps, connected });
    this.quality = level;
    this.#emit('quality', { level, rttMs: summary.rttMs, lossRatio: summary.lossRatio, downlinkBps: this.downlinkBps });
    if (this.channel?.isOpen) this.channel.send(endpointStats({ connectionQuality: level }));
  }

  /** The candidate pair carrying our media (getStats: transport -> selected candidate-pair ->
   * local-candidate / remote-candidate), or null before ICE has selected one. */
  async selectedCandidatePair() {
    const pc = this.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    let pair = null;
    for (const r of report.values()) {
      if (r.type === 'transport' && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
    }
    if (!pair) {
      for (const r of report.values()) {
        if (r.type === 'candidate-pair' && r.state === 'succeeded' && r.nominated) pair = r;
      }
    }
    if (!pair) return null;
    const side = (c) => c && {
      candidateType: c.candidateType,
      protocol: c.protocol,
      relayProtocol: c.relayProtocol ?? null,
      tcpType: c.tcpType ?? null,
      address: c.address ?? c.ip,
      port: c.port,
      relatedAddress: c.relatedAddress ?? null,
      url: c.url ?? null,
    };
    return {
      state: pair.state,
      bytesSent: pair.bytesSent,
      bytesReceived: pair.bytesReceived,
      // the sender's own bandwidth estimate (transport-cc feedback or REMB), when it has one
      availableOutgoingBitrate: pair.availableOutgoingBitrate ?? null,
      local: side(report.get(pair.localCandidateId)),
      remote: side(report.get(pair.remoteCandidateId)),
    };
  }

  /** Per remote endpoint: frames decoded of its video (for the page's own diagnostics and tests). */
  async videoStats() {
    const out = {};
    const { pc, offer } = this; // a move may replace both while getStats runs
    if (!pc || !offer) return out;
    const report = await pc.getStats();
    for (const r of report.values()) {
      if (r.type !== 'inbound-rtp' || r.kind !== 'video') continue;
      const track = offer.trackForMid(r.mid);
      if (track?.endpoint) {
        // a screen share is listed apart from the camera: `<endpoint>#screen`
        out[trackKind(track) === 'screen' ? `${track.endpoint}#screen` : track.endpoint] = {
          framesDecoded: r.framesDecoded ?? 0, ssrc: r.ssrc, frameHeight: r.frameHeight ?? 0, frameWidth: r.frameWidth ?? 0,
          bytesReceived: r.bytesReceived ?? 0, codec: report.get(r.codecId)?.mimeType ?? '',
        };
      }
    }
    return out;
  }

  /** Our microphone as sent: the codec (payload) and packets sent. */
  async audioSendStats() {
    const pc = this.pc;
    if (!pc) return {};
    const report = await pc.getStats();
    for (const r of report.values()) {
      if (r.type === 'outbound-rtp' && r.kind === 'audio') {
        return { codec: report.get(r.codecId)?.mimeType ?? '', packetsSent: r.packetsSent ?? 0 };
      }
    }
    return {};
  }

  /** Our camera's encodings as sent (one per simulcast layer): SSRC, height, bytes sent. */
  async sendStats() {
    const pc = this.pc;
    if (!pc) return [];
    const out = [];
    const report = await pc.getStats();
    for (const r of report.values()) {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        out.push({
          ssrc: r.ssrc, frameHeight: r.frameHeight ?? 0, bytesSent: r.bytesSent ?? 0, active: r.active,
          limitation: r.qualityLimitationReason, targetBitrate: r.targetBitrate,
          codec: report.get(r.codecId)?.mimeType ?? '', scalabilityMode: r.scalabilityMode ?? '',
        });
      }
    }
    return out.sort((a, b) => a.frameHeight - b.frameHeight);
  }
}
