// The meeting page: pre-join (preview, names), the meeting (tiles, controls, chat), and the
// screen after leaving. Behaviour lives in Meeting (meeting.js); this file wires it to the DOM.

import { credentials, roomPassword } from './auth.js';
import { bestGrid } from './layout.js';
import { knock } from './lobby.js';
import { Meeting, MeetingError } from './meeting.js';
import { Moderation } from './moderation.js';
import { ModerationUi } from './moderation-ui.js';
import { parseDisplayName, parseRoomName, roomFromPath } from './room.js';
import { reconnectDelay } from './bridge-channel.js';
import { appendBounded, Banner, chatLine, createTile, ICONS, MAX_CHAT_LINES, participantRow, setTileTrack, updateTile } from './ui.js';
import { Debouncer } from './video-constraints.js';
import { DevicePicker, mediaConstraints, rememberedDevice } from './devices.js';
import { handQueue, REACTIONS } from './reactions.js';
import { screenSourceName } from './screenshare.js';
import { stageTile, VIEWS, viewConstraints } from './views.js';

const $ = (id) => document.getElementById(id);
const config = window.config;
const banner = new Banner($('banner'));
const state = {
  stream: null, audioMuted: false, videoMuted: false, meeting: null, room: undefined, name: '',
  pinned: null, // the endpoint shown large, the others as thumbnails
  heightLimits: {}, // endpoint -> the most lines of its video to ask for (parley.limitVideo)
  reconnecting: false,
  unread: 0,
  lastN: Number.isInteger(config?.channelLastN) ? config.channelLastN : -1,
  view: VIEWS.includes(localStorage.getItem('parley.view')) ? localStorage.getItem('parley.view') : 'tile',
  stageKey: null, // the tile shown large (pinned, a screen share, or the speaker in stage view)
  reactions: [], // reactions seen (for the page's diagnostics)
  speaker: rememberedDevice('audiooutput'), // the audio output device ('' = default)
};
const SCREEN = '#screen'; // a screen-share tile's key: `<endpoint>#screen`

/** Diagnostics the page exposes (timings, per-endpoint video stats) for operators and tests. */
const parley = {
  state: 'prejoin',
  timings: {},
  errors: [],
  async videoStats() {
    return state.meeting ? state.meeting.videoStats() : {};
  },
  async sendStats() {
    return state.meeting ? state.meeting.sendStats() : [];
  },
  /** Our microphone as sent: {codec, packetsSent} ('audio/red' with ?red=1). */
  async audioSendStats() {
    return state.meeting ? state.meeting.audioSendStats() : {};
  },
  /** The candidate pair that carries the media (types, protocols, addresses), or null. */
  async candidatePair() {
    return state.meeting ? state.meeting.selectedCandidatePair() : null;
  },
  /** The STUN/TURN URLs the XMPP server offered (XEP-0215). */
  get iceServers() {
    return (state.meeting?.iceServers ?? []).map((s) => s.urls);
  },
  /** The ReceiverVideoConstraints last asked of the bridge. */
  get videoConstraints() {
    return state.meeting?.videoConstraints ?? null;
  },
  /** Our local description as applied (with the simulcast layers). */
  /** The remote description as applied. */
  remoteSdp() {
    return state.meeting?.pc?.remoteDescription?.sdp ?? "";
  },
  localSdp() {
    return state.meeting?.pc?.localDescription?.sdp ?? '';
  },
  get forwardedSources() {
    return state.meeting?.forwardedSources ?? null;
  },
  /** Jingle IQs refused (not from the focus, or not for our session). */
  get jingleRejected() {
    return state.meeting?.jingleRejected ?? 0;
  },
  /** Our media session's Jingle sid and who offered it (the focus). */
  get session() {
    const s = state.meeting?.session;
    return s ? { sid: s.sid, from: s.from } : null;
  },
  /** The bridge's estimate of our downlink (ConnectionStats), in bits per second. */
  get downlinkBps() {
    return state.meeting?.downlinkBps ?? null;
  },
  /** How many videos to receive at most (-1: all); starts at config.channelLastN. */
  setLastN(n) {
    state.lastN = n;
    constraints.schedule();
  },
  /** The room's recording status as the focus publishes it ({status, mode, sessionId, on}), or null. */
  get recording() {
    return state.meeting?.recording ?? null;
  },
  /** Start ('file', or 'stream' with an RTMP URL) or stop recording, as the Record button does. */
  startRecording(mode = 'file', streamId = undefined) {
    return state.meeting.startRecording(mode, streamId);
  },
  stopRecording() {
    return state.meeting.stopRecording();
  },
  /** Audio received per remote endpoint (getStats inbound-rtp): {endpoint: {packetsReceived, bytesReceived,
   * audioLevel, totalAudioEnergy, codec}}. */
  async audioStats() {
    const m = state.meeting;
    if (!m?.pc) return {};
    const owner = new Map();
    for (const [endpoint, person] of m.roster.people) {
      const track = person.tracks.get('audio');
      if (track) owner.set(track.id, endpoint);
    }
    const out = {};
    const report = await m.pc.getStats();
    report.forEach((r) => {
      if (r.type !== 'inbound-rtp' || r.kind !== 'audio') return;
      const endpoint = owner.get(r.trackIdentifier);
      if (endpoint) {
        out[endpoint] = {
          packetsReceived: r.packetsReceived, bytesReceived: r.bytesReceived, audioLevel: r.audioLevel ?? 0,
          totalAudioEnergy: r.totalAudioEnergy ?? 0, codec: report.get(r.codecId)?.mimeType ?? '',
        };
      }
    });
    return out;
  },
  /** Our role, the others' roles, moderator mutes and knockers (moderation.js). */
  get moderation() {
    const m = state.moderation;
    if (!m) return null;
    return {
      role: m.role,
      members: Object.fromEntries([...m.members].map(([n, v]) => [n, v.role])),
      forceMuted: { ...m.forceMuted },
      avModeration: { ...m.avModeration },
      approved: { ...m.approved },
      knockers: [...m.knockers.values()].map((k) => k.name),
    };
  },
  /** Ask the focus to lift a moderator's mute of `kind`, as the microphone button does (it may refuse). */
  requestUnmute(kind = 'audio') {
    return state.moderation.requestUnmute(kind);
  },
  /** Ask for at most `height` lines of `endpoint`'s video whatever its tile's size (null: what the
   * layout asks); diagnostics and tests. */
  limitVideo(endpoint, height) {
    if (height === null) delete state.heightLimits[endpoint];
    else state.heightLimits[endpoint] = Math.max(0, Math.floor(Number(height)) || 0);
    constraints.schedule();
  },
  /** Show `endpoint` large (null: back to the grid); clicking a tile does the same. */
  pin(endpoint) {
    pin(endpoint);
  },
  /** 'tile', 'stage' (follows the dominant speaker) or 'audio-only' (no video received). */
  get view() {
    return state.view;
  },
  setView(view) {
    setView(view);
  },
  /** The tile key on stage (an endpoint, or `<endpoint>#screen`), or null in a plain grid. */
  get stage() {
    return state.stageKey;
  },
  startScreenShare() {
    return state.meeting.startScreenShare();
  },
  stopScreenShare() {
    state.meeting?.stopScreenShare();
  },
  get sharingScreen() {
    return !!state.meeting?.screenTrack;
  },
  /** Our screen share's capture settings (width, height, frameRate), or null. */
  screenSettings() {
    return state.meeting?.screenTrack?.getSettings() ?? null;
  },
  raiseHand(raised = true) {
    setHand(raised);
  },
  react(name) {
    return state.meeting?.sendReaction(name) ?? false;
  },
  /** Reactions seen: [{from, reactions, mine}]. */
  get reactions() {
    return state.reactions;
  },
  /** The participant list as shown: [{endpoint, nick, raisedHand, moderator, audioMuted, speaking}]. */
  participants() {
    return participantEntries();
  },
  /** Endpoints whose tile says "connection interrupted". */
  interrupted() {
    return [...tiles].filter(([, t]) => t.dataset.interrupted === 'true').map(([k]) => k);
  },
  /** Use the camera/microphone/speaker `deviceId` ('' = default); kind: videoinput, audioinput, audiooutput. */
  useDevice(kind, deviceId) {
    return useDevice(kind, deviceId);
  },
  /** The local camera track's device and settings. */
  cameraSettings() {
    const t = state.stream?.getVideoTracks()[0];
    return t ? { label: t.label, ...t.getSettings() } : null;
  },
  async devices() {
    return navigator.mediaDevices.enumerateDevices().then((ds) => ds.map((d) => ({ kind: d.kind, deviceId: d.deviceId, label: d.label })));
  },
};
window.parley = parley;

function show(screen) {
  for (const id of ['prejoin', 'meeting', 'left', 'lobby']) if ($(id)) $(id).hidden = id !== screen;
  parley.state = screen;
}

function fail(kind, message) {
  parley.errors.push({ kind, message });
  banner.show(message, 'error');
}

// ------------------------------------------------------------------------------ pre-join

async function startPreview() {
  const placeholder = $('preview-placeholder');
  const message = $('preview-message');
  if (!navigator.mediaDevices?.getUserMedia) {
    placeholder.classList.add('error');
    message.textContent = 'This browser cannot use a camera here (the page needs HTTPS or localhost).';
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      ...mediaConstraints('audioinput', rememberedDevice('audioinput')),
      ...mediaConstraints('videoinput', rememberedDevice('videoinput')),
    });
  } catch (e) {
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      message.textContent = `Camera unavailable (${e.name}). You can join with audio only.`;
    } catch (e2) {
      message.textContent = `Camera and microphone unavailable (${e2.name}). You can still join to watch and chat.`;
    }
    placeholder.classList.add('error');
    parley.errors.push({ kind: 'media', message: message.textContent });
    renderPreviewButtons();
    return;
  }
  $('preview-video').srcObject = state.stream;
  placeholder.hidden = true;
  renderPreviewButtons();
  await pickers.refresh();
}

function renderPreviewButtons() {
  const hasAudio = !!state.stream?.getAudioTracks().length;
  const hasVideo = !!state.stream?.getVideoTracks().length;
  const mic = $('preview-mic');
  const cam = $('preview-cam');
  mic.innerHTML = state.audioMuted || !hasAudio ? ICONS.micOff : ICONS.mic;
  cam.innerHTML = state.videoMuted || !hasVideo ? ICONS.camOff : ICONS.cam;
  mic.setAttribute('aria-pressed', String(state.audioMuted || !hasAudio));
  cam.setAttribute('aria-pressed', String(state.videoMuted || !hasVideo));
  mic.disabled = !hasAudio;
  cam.disabled = !hasVideo;
  for (const t of state.stream?.getAudioTracks() ?? []) t.enabled = !state.audioMuted;
  for (const t of state.stream?.getVideoTracks() ?? []) t.enabled = !state.videoMuted;
  $('preview-placeholder').hidden = hasVideo && !state.videoMuted;
  $('preview-avatar').textContent = initialsOf($('name-input').value);
}

function initialsOf(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  return words.length ? words.map((w) => w[0]).slice(0, 2).join('').toUpperCase() : '?';
}

function setupPrejoin() {
  const roomInput = $('room-input');
  const nameInput = $('name-input');
  const fromUrl = roomFromPath(location.pathname);
  if (fromUrl) roomInput.value = fromUrl;
  nameInput.value = localStorage.getItem('parley.displayName') ?? '';
  $('preview-mic').addEventListener('click', () => {
    state.audioMuted = !state.audioMuted;
    renderPreviewButtons();
  });
  $('preview-cam').addEventListener('click', () => {
    state.videoMuted = !state.videoMuted;
    renderPreviewButtons();
  });
  nameInput.addEventListener('input', () => ($('preview-avatar').textContent = initialsOf(nameInput.value)));
  $('join-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const room = parseRoomName(roomInput.value);
    const name = parseDisplayName(nameInput.value);
    const error = room.error ?? name.error;
    const formError = $('form-error');
    formError.hidden = !error;
    formError.textContent = error ?? '';
    if (error) return;
    localStorage.setItem('parley.displayName', name.name);
    join(room.room, name.name);
  });
  // A room in the URL plus a remembered name joins directly.
  const autoName = new URLSearchParams(location.search).get('name') ?? nameInput.value;
  if (fromUrl && autoName) {
    nameInput.value = autoName;
    return { autoJoin: true };
  }
  (fromUrl ? nameInput : roomInput).focus();
  return { autoJoin: false };
}

// ------------------------------------------------------------------------------ meeting

const tiles = new Map();

function stage() {
  return $('stage');
}

const PHONE_WIDTH = 720;

function layout() {
  const el = stage();
  el.dataset.count = String(tiles.size);
  el.dataset.view = state.view;
  if (state.pinned && !tiles.has(state.pinned)) state.pinned = null;
  const meeting = state.meeting;
  state.stageKey = meeting ? stageTile({
    view: state.view, pinned: state.pinned, screens: meeting.roster.screenOrder.map((e) => `${e}${SCREEN}`),
    dominant: meeting.roster.dominant, self: meeting.endpointId, tiles: [...tiles.keys()],
  }) : null;
  el.classList.toggle('has-pinned', !!state.stageKey);
  for (const [key, tile] of tiles) updateTile(tile, { pinned: key === state.stageKey });
  if (state.stageKey) {
    el.style.removeProperty('--columns');
    el.style.removeProperty('--tile-width');
  } else if (window.innerWidth > PHONE_WIDTH && el.clientWidth > 0) {
    const grid = bestGrid(tiles.size, el.clientWidth, el.clientHeight);
    el.style.setProperty('--columns', String(grid.columns));
    el.style.setProperty('--tile-width', `${grid.tileWidth}px`);
  } else {
    el.style.removeProperty('--columns');
    el.style.removeProperty('--tile-width');
  }
  const people = meeting ? meeting.roster.size + 1 : tiles.size;
  $('participant-count').textContent = `${people} ${people === 1 ? 'person' : 'people'}`;
  renderParticipants();
  constraints.schedule();
}

function setView(view) {
  if (!VIEWS.includes(view)) return;
  state.view = view;
  localStorage.setItem('parley.view', view);
  const next = { tile: 'Stage view', stage: 'Audio only', 'audio-only': 'Tile view' }[view];
  $('view-button').querySelector('.tool-label').textContent = next;
  $('view-button').querySelector('.tool-icon').innerHTML = ICONS[{ tile: 'stage', stage: 'speaker', 'audio-only': 'grid' }[view]];
  $('view-button').dataset.view = view;
  layout();
}

function setHand(raised) {
  const meeting = state.meeting;
  if (!meeting) return;
  meeting.setRaisedHand(raised);
  const button = $('hand-button');
  button.setAttribute('aria-pressed', String(!!raised));
  button.querySelector('.tool-label').textContent = raised ? 'Lower hand' : 'Raise hand';
  const local = tiles.get(meeting.endpointId);
  if (local) updateTile(local, { hand: !!raised });
  renderParticipants();
}

/** Everyone in the meeting for the participant list: raised hands first (earliest first). */
function participantEntries() {
  const meeting = state.meeting;
  if (!meeting) return [];
  const self = {
    endpoint: meeting.endpointId, nick: state.name, audioMuted: meeting.audioMuted, videoMuted: meeting.videoMuted,
    raisedHand: meeting.raisedHand, moderator: false, self: true,
  };
  const all = [self, ...[...meeting.roster.people.values()].map((p) => ({
    endpoint: p.endpoint, nick: p.nick, audioMuted: p.audioMuted, videoMuted: p.videoMuted,
    raisedHand: p.raisedHand ?? null, moderator: !!p.moderator, self: false,
  }))];
  for (const p of all) p.speaking = meeting.roster.dominant === p.endpoint;
  const hands = handQueue(all);
  const rank = (p) => (p.raisedHand ? hands.indexOf(p.endpoint) : hands.length);
  return all.sort((a, b) => rank(a) - rank(b) || a.nick.localeCompare(b.nick));
}

function renderParticipants() {
  const list = $('participant-list');
  if (!list) return;
  list.replaceChildren(...participantEntries().map(participantRow));
}

/** Switch camera, microphone (getUserMedia + replaceTrack) or speaker (setSinkId). */
async function useDevice(kind, deviceId) {
  if (kind === 'audiooutput') {
    state.speaker = deviceId;
    await Promise.all([...document.querySelectorAll('audio')].map((a) => a.setSinkId?.(deviceId).catch(() => {})));
    return true;
  }
  const media = await navigator.mediaDevices.getUserMedia(mediaConstraints(kind, deviceId));
  const track = media.getTracks()[0];
  if (state.meeting) {
    await state.meeting.replaceLocalTrack(track);
    state.stream = state.meeting.stream;
  } else {
    if (!state.stream) state.stream = new MediaStream();
    for (const old of kind === 'audioinput' ? state.stream.getAudioTracks() : state.stream.getVideoTracks()) {
      state.stream.removeTrack(old);
      old.stop();
    }
    state.stream.addTrack(track);
    renderPreviewButtons();
  }
  if (kind === 'videoinput') {
    $('preview-video').srcObject = state.stream;
    const local = state.meeting && tiles.get(state.meeting.endpointId);
    if (local) setTileTrack(local, 'video', track);
  }
  return true;
}

const pickers = {
  list: [],
  async refresh() {
    await Promise.all(this.list.map((p) => p.refresh()));
  },
};

function showReaction({ from, reactions, mine }) {
  state.reactions.push({ from, reactions, mine });
  if (state.reactions.length > 100) state.reactions.shift();
  const layer = $('reaction-layer');
  const who = mine ? 'You' : state.meeting?.roster.people.get(from)?.nick ?? from;
  for (const r of reactions) {
    const el = document.createElement('div');
    el.className = 'reaction';
    el.dataset.reaction = r;
    el.dataset.from = from;
    el.textContent = `${REACTIONS[r]} ${who}`;
    el.style.left = `${10 + Math.random() * 60}%`;
    layer.append(el);
    setTimeout(() => el.remove(), 4000);
  }
}

function pin(endpoint) {
  state.pinned = state.pinned === endpoint || !tiles.has(endpoint) ? null : endpoint;
  layout();
}

/** The video source a tile shows (a camera `-v0`, a screen share `-v1`). */
function sourceOfTile(key) {
  const meeting = state.meeting;
  if (key.endsWith(SCREEN)) {
    const endpoint = key.slice(0, -SCREEN.length);
    return meeting.roster.people.get(endpoint)?.screenSource ?? screenSourceName(endpoint);
  }
  return meeting.roster.videoSourceOf(key);
}

/** Tell the bridge what video the view needs: tile heights, the stage tile, last-N. */
function sendVideoConstraints() {
  const meeting = state.meeting;
  if (!meeting) return;
  const remote = [...tiles].filter(([key]) => key !== meeting.endpointId);
  const msg = viewConstraints({
    view: state.view,
    tiles: remote.map(([key, tile]) => ({ source: sourceOfTile(key), height: tile.clientHeight, screen: key.endsWith(SCREEN) })),
    stage: state.stageKey && state.stageKey !== meeting.endpointId ? sourceOfTile(state.stageKey) : null,
    lastN: state.lastN,
  });
  for (const [endpoint, maxHeight] of Object.entries(state.heightLimits)) {
    const source = meeting.roster.videoSourceOf(endpoint);
    if (source && msg.constraints?.[source]) msg.constraints[source] = { ...msg.constraints[source], maxHeight };
  }
  meeting.setReceiverVideoConstraints(msg);
}

const constraints = new Debouncer(sendVideoConstraints, 250);

function renderControls() {
  const m = state.meeting;
  const mic = $('mic-button');
  const cam = $('cam-button');
  mic.setAttribute('aria-pressed', String(m.audioMuted));
  cam.setAttribute('aria-pressed', String(m.videoMuted));
  mic.querySelector('.tool-icon').innerHTML = m.audioMuted ? ICONS.micOff : ICONS.mic;
  mic.querySelector('.tool-label').textContent = m.audioMuted ? 'Unmute' : 'Mute';
  cam.querySelector('.tool-icon').innerHTML = m.videoMuted ? ICONS.camOff : ICONS.cam;
  cam.querySelector('.tool-label').textContent = m.videoMuted ? 'Start video' : 'Stop video';
  // AV moderation: locked until a moderator allows it (the bridge drops the media meanwhile)
  mic.disabled = !state.stream?.getAudioTracks().length || !!state.moderation?.locked('audio');
  cam.disabled = !state.stream?.getVideoTracks().length || !!state.moderation?.locked('video');
  mic.title = state.moderation?.locked('audio') ? 'A moderator must allow you to unmute' : '';
  // only a moderator may start or stop recording (the focus answers others `forbidden`), as in
  // jitsi-meet: the control follows our own role in the room (muc#user, XEP-0045 section 5.1)
  $('record-button').hidden = !state.moderation?.isModerator;
  const local = tiles.get(m.endpointId);
  if (local) updateTile(local, { audioMuted: m.audioMuted, videoMuted: m.videoMuted });
}

function onRosterChange(kind, endpoint, person) {
  const meeting = state.meeting;
  if (kind === 'left') {
    state.moderationUi?.forget(endpoint);
    for (const key of [endpoint, `${endpoint}${SCREEN}`]) {
      tiles.get(key)?.remove();
      tiles.delete(key);
    }
    layout();
    return;
  }
  if (person) syncScreenTile(endpoint, person);
  let tile = tiles.get(endpoint);
  if (!tile && person) {
    tile = createTile({ endpoint, nick: person.nick });
    state.moderationUi?.decorate(tile, endpoint);
    tile.addEventListener('click', () => pin(endpoint));
    tile.title = 'Click to show large';
    tiles.set(endpoint, tile);
    stage().append(tile);
    layout();
  }
  if (kind === 'speaker') {
    renderParticipants();
    if (state.view === 'stage') layout(); // the stage follows the speaker
  }
  if (!tile) {
    if (kind === 'speaker') tiles.get(meeting.endpointId)?.classList.toggle('speaking', meeting.roster.dominant === endpoint);
    return;
  }
  if (kind === 'track' && person) {
    for (const k of ['audio', 'video']) {
      const track = person.tracks.get(k) ?? null;
      const el = tile.querySelector(k === 'video' ? 'video' : 'audio');
      if (el && (el.srcObject?.getTracks()[0] ?? null) !== track) {
        setTileTrack(tile, k, track);
        if (k === 'video' && track) watchFirstFrame(tile.querySelector('video'));
        if (k === 'audio' && track && state.speaker) tile.querySelector('audio')?.setSinkId?.(state.speaker).catch(() => {});
      }
    }
  }
  if (person) {
    updateTile(tile, {
      nick: person.nick, audioMuted: person.audioMuted, videoMuted: person.videoMuted, quality: person.quality,
      forwarded: meeting.roster.isForwarded(endpoint), hand: !!person.raisedHand, moderator: !!person.moderator,
      interrupted: !!person.interrupted,
    });
    if (kind === 'updated') renderParticipants();
  }
  if (kind === 'track') constraints.schedule();
  updateTile(tile, { speaking: meeting.roster.dominant === endpoint });
}

/** A screen share gets its own tile, `<endpoint>#screen`, which goes on stage. */
function syncScreenTile(endpoint, person) {
  const key = `${endpoint}${SCREEN}`;
  const track = person.tracks.get('screen') ?? null;
  let tile = tiles.get(key);
  if (!track) {
    if (tile) {
      tile.remove();
      tiles.delete(key);
      layout();
    }
    return;
  }
  let changed = false;
  if (!tile) {
    tile = createTile({ endpoint: key, nick: `${person.nick}'s screen` });
    tile.classList.add('screen-share');
    tile.addEventListener('click', () => pin(key));
    tiles.set(key, tile);
    stage().append(tile);
    changed = true;
  }
  if ((tile.querySelector('video').srcObject?.getTracks()[0] ?? null) !== track) {
    setTileTrack(tile, 'video', track);
    changed = true;
  }
  if (changed) layout();
}

function watchFirstFrame(video) {
  if (parley.timings.firstRemoteFrameMs !== undefined || !video.requestVideoFrameCallback) return;
  video.requestVideoFrameCallback(() => {
    if (parley.timings.firstRemoteFrameMs === undefined) {
      parley.timings.firstRemoteFrameMs = Math.round(performance.now() - parley.timings.joinClicked);
    }
  });
}

/** `?codec=VP9|H264` (the camera's codec, VP8 otherwise) and `?red=1` (Opus with RED) of the page. */
function codecOptions() {
  const params = new URLSearchParams(location.search);
  const codec = (params.get('codec') ?? '').toUpperCase();
  return { codec: ['VP8', 'VP9', 'H264'].includes(codec) ? codec : 'VP8', red: params.get('red') === '1' };
}

/** A Meeting wired to the page (its events update the screen while it is the current one). */
function createMeeting(room, name) {
  const status = (text) => {
    const line = $('status-line');
    line.hidden = false;
    line.textContent = text;
  };
  const auth = {
    ...(state.auth ?? {}),
    onPassword: (retry) => roomPassword(retry),
    onWaitForHost: async () => {
      parley.phase = 'waiting-for-host';
      status('Waiting for the host to start the meeting…');
      await new Promise((r) => setTimeout(r, 3000));
    },
    onLobby: async (conn, lobbyJid) => {
      parley.phase = 'lobby';
      parley.lobby = 'knocking';
      show('lobby');
      try {
        await knock(conn, lobbyJid, { nick: meeting.endpointId, name, roomJid: meeting.roomJid, cancelled: () => meeting.left });
        parley.lobby = 'admitted';
      } catch (e) {
        parley.lobby = e.denied ? 'denied' : 'closed';
        throw new MeetingError('room', e.message);
      } finally {
        if (parley.state === 'lobby') show('prejoin');
      }
    },
  };
  const meeting = new Meeting(config, { room, displayName: name, stream: state.stream, auth, ...codecOptions() });
  const current = () => state.meeting === meeting;
  renderRecording(null); // a new meeting learns the status from the focus's presence
  meeting.setAudioMuted(state.audioMuted || !state.stream?.getAudioTracks().length);
  meeting.setVideoMuted(state.videoMuted || !state.stream?.getVideoTracks().length);
  meeting.roster.onChange((...args) => current() && onRosterChange(...args));
  meeting.addEventListener('status', ({ detail }) => {
    if (!current()) return;
    // from the MUC join on: roles arrive with the room's first presences
    if (detail.phase === 'joining') attachModeration(meeting);
    parley.phase = detail.phase;
    const line = $('status-line');
    line.hidden = !detail.text;
    line.textContent = detail.text;
    if (detail.phase === 'joined') parley.timings.mediaConnectedMs = Math.round(performance.now() - parley.timings.joinClicked);
  });
  meeting.addEventListener('failure', ({ detail }) => {
    if (!current()) return;
    // The XMPP connection dropped (a server restart, a network change): join again, with backoff.
    if (detail.kind === 'server' && parley.state === 'meeting') {
      reconnect(detail.message);
      return;
    }
    fail(detail.kind, detail.message);
  });
  meeting.addEventListener('channel', ({ detail }) => {
    if (!current()) return;
    parley.channel = detail.state;
    if (detail.transport) parley.channelTransport = detail.transport;
    if (detail.state === 'reconnecting' && detail.delaySeconds) {
      banner.show(`Lost the bridge channel; reconnecting in ${detail.delaySeconds} s…`, 'info');
    } else if (detail.state === 'open') {
      if ($('banner').dataset.kind === 'info' && parley.phase !== 'reconnecting') banner.hide();
      constraints.schedule();
    }
  });
  meeting.addEventListener('quality', ({ detail }) => {
    if (!current()) return;
    parley.quality = detail;
    const q = $('quality');
    q.dataset.level = detail.level;
    const label = { good: 'Good connection', fair: 'Fair connection', poor: 'Poor connection', unknown: 'Measuring…' }[detail.level];
    q.querySelector('.quality-label').textContent = label;
    q.title = detail.rttMs !== undefined ? `${label}: ${Math.round(detail.rttMs)} ms round trip` : label;
    const local = tiles.get(meeting.endpointId);
    if (local) updateTile(local, { quality: detail.level });
  });
  meeting.addEventListener('recording', ({ detail }) => {
    if (current()) renderRecording(detail);
  });
  meeting.addEventListener('reaction', ({ detail }) => {
    if (current()) showReaction(detail);
  });
  meeting.addEventListener('screen', ({ detail }) => {
    if (!current()) return;
    const button = $('screen-button');
    button.setAttribute('aria-pressed', String(detail.on));
    button.querySelector('.tool-label').textContent = detail.on ? 'Stop sharing' : 'Share screen';
  });
  meeting.addEventListener('chat', ({ detail }) => {
    if (!current()) return;
    const log = $('chat-log');
    appendBounded(log, chatLine(detail), MAX_CHAT_LINES);
    log.scrollTop = log.scrollHeight;
    if ($('chat').hidden && !detail.mine) {
      state.unread += 1;
      $('chat-unread').hidden = false;
      $('chat-unread').textContent = String(state.unread);
    }
  });
  return meeting;
}

/** Fresh tiles for `meeting` (ours first, then whoever the roster already knows). */
function renderMeeting(meeting) {
  stage().replaceChildren();
  tiles.clear();
  state.pinned = null;
  const local = createTile({ endpoint: meeting.endpointId, nick: `${state.name} (you)`, local: true });
  tiles.set(meeting.endpointId, local);
  stage().append(local);
  if (state.stream?.getVideoTracks()[0]) setTileTrack(local, 'video', state.stream.getVideoTracks()[0]);
  for (const [endpoint, person] of meeting.roster.people) onRosterChange('joined', endpoint, person);
  layout();
  renderControls();
  setHand(false);
  if (state.speaker) useDevice('audiooutput', state.speaker);
}

function detachModeration() {
  state.moderationUi?.close();
  state.moderation?.close();
  state.moderationUi = state.moderation = null;
  $('record-button').hidden = true;
}

/** The page's moderation for a meeting joining its room (moderation.js, moderation-ui.js). */
function attachModeration(meeting) {
  detachModeration();
  const moderation = new Moderation(meeting);
  state.moderation = moderation;
  state.moderationUi = new ModerationUi(moderation, {
    banner,
    toolbar: $('mic-button').parentElement,
    panel: $('participants'),
    raiseHand: (raised) => state.meeting === meeting && setHand(raised),
    onChange: () => state.meeting === meeting && renderControls(),
    onKicked: ({ actor }) => {
      if (state.meeting !== meeting) return;
      parley.kicked = true;
      leave(`${actor ? 'A moderator' : 'The meeting'} removed you from “${state.room}”.`, 'You were removed from the meeting');
    },
  });
  for (const [endpoint, tile] of tiles) if (endpoint !== meeting.endpointId) state.moderationUi.decorate(tile, endpoint);
}

async function join(room, name) {
  state.room = room;
  state.name = name;
  banner.hide();
  if (!state.auth) {
    state.auth = await credentials(config, state.authFailure);
    if (!state.auth) return;
  }
  parley.timings = { joinClicked: performance.now() };
  if (location.pathname !== `/${encodeURIComponent(room)}`) history.replaceState(null, '', `/${encodeURIComponent(room)}`);
  document.title = `${room} · Parley`;
  const joinButton = $('join-button');
  joinButton.disabled = true;
  joinButton.textContent = 'Joining…';

  const meeting = createMeeting(room, name);
  state.meeting = meeting;
  parley.endpointId = meeting.endpointId;
  state.unread = 0;
  $('chat-button').onclick = () => {
    $('chat').hidden = !$('chat').hidden;
    if (!$('chat').hidden) {
      state.unread = 0;
      $('chat-unread').hidden = true;
      $('chat-input').focus();
    }
  };

  try {
    await meeting.join();
  } catch (e) {
    meeting.leave();
    state.meeting = null;
    joinButton.disabled = false;
    joinButton.textContent = 'Join meeting';
    if (meeting.authFailure !== undefined && config.authentication === 'internal') {
      state.auth = null; // ask again, saying why
      state.authFailure = e.message;
    }
    if (parley.state !== 'prejoin' && parley.state !== 'left') show('prejoin');
    detachModeration();
    fail(e.kind ?? 'server', e.message);
    return;
  }
  parley.timings.joinedMs = Math.round(performance.now() - parley.timings.joinClicked);
  $('room-title').textContent = room;
  $('chat-log').replaceChildren();
  renderMeeting(meeting);
  show('meeting');
}

/**
 * The meeting server connection is gone: keep the meeting screen, say so, and join the room again
 * as a new occupant (new conference request; the focus invites us and the media come back),
 * retrying with backoff 1, 2, 4 … 30 s until it works or the user leaves.
 */
async function reconnect(why) {
  const lost = state.meeting;
  if (!lost || state.reconnecting) return;
  state.reconnecting = true;
  lost.leave();
  parley.phase = 'reconnecting';
  parley.reconnects = (parley.reconnects ?? 0) + 1;
  const line = $('status-line');
  line.hidden = false;
  line.textContent = 'Reconnecting to the meeting…';
  for (let attempt = 0; parley.state === 'meeting' && state.meeting === lost; attempt++) {
    const delay = Math.min(30, reconnectDelay(attempt));
    banner.show(`${why} Reconnecting${attempt ? ` (attempt ${attempt + 1})` : ''}…`, 'info');
    await new Promise((r) => setTimeout(r, delay * 1000));
    if (parley.state !== 'meeting' || state.meeting !== lost) break;
    const meeting = createMeeting(state.room, state.name);
    state.meeting = meeting; // its events drive the page from now on
    try {
      await meeting.join();
    } catch (e) {
      console.warn('reconnect failed:', e.message);
      meeting.leave();
      if (state.meeting !== meeting) break; // the user left meanwhile
      state.meeting = lost;
      continue;
    }
    if (parley.state !== 'meeting') {
      meeting.leave();
      break;
    }
    parley.endpointId = meeting.endpointId;
    renderMeeting(meeting);
    banner.hide();
    break;
  }
  state.reconnecting = false;
}

function leave(detail, title = 'You left the meeting') {
  detachModeration();
  state.meeting?.leave();
  state.meeting = null;
  state.pinned = null;
  constraints.cancel();
  for (const tile of tiles.values()) tile.remove();
  tiles.clear();
  $('left-title').textContent = title;
  $('left-detail').textContent = detail ?? `You left “${state.room}”.`;
  $('join-button').disabled = false;
  $('join-button').textContent = 'Join meeting';
  show('left');
}

/** Everyone sees whether the meeting is recorded or streamed; the button (a moderator's) starts and stops it. */
function renderRecording(recording) {
  const on = !!recording?.on;
  const indicator = $('recording-indicator');
  indicator.hidden = !on;
  indicator.textContent = recording?.mode === 'stream' ? '● LIVE' : '● REC';
  indicator.title = recording?.status === 'pending' ? 'Recording is starting' : 'This meeting is being recorded';
  const button = $('record-button');
  button.setAttribute('aria-pressed', String(on));
  button.querySelector('.tool-label').textContent = on ? 'Stop recording' : 'Record';
  if (recording?.status === 'off' && recording.failureReason) banner.show(`Recording stopped: ${recording.failureReason}`, 'info');
}

function setupMeetingControls() {
  $('chat-button').querySelector('.tool-icon').innerHTML = ICONS.chat;
  $('leave-button').querySelector('.tool-icon').innerHTML = ICONS.leave;
  for (const [id, icon] of [['screen-button', 'screen'], ['hand-button', 'hand'], ['reactions-button', 'smile'],
    ['participants-button', 'people'], ['settings-button', 'settings']]) $(id).querySelector('.tool-icon').innerHTML = ICONS[icon];
  // state.audioMuted/videoMuted outlive a reconnect (the next Meeting starts with them)
  $('mic-button').addEventListener('click', async () => {
    if (state.meeting.audioMuted && state.moderation?.forceMuted.audio) {
      try {
        await state.moderation.requestUnmute('audio'); // a moderator muted us: the focus decides
      } catch (e) {
        banner.show(`You cannot unmute yet: ${e.message}`, 'info');
        return;
      }
    }
    state.audioMuted = !state.meeting.audioMuted;
    state.meeting.setAudioMuted(state.audioMuted);
    renderControls();
  });
  $('cam-button').addEventListener('click', async () => {
    if (state.meeting.videoMuted && state.moderation?.forceMuted.video) {
      try {
        await state.moderation.requestUnmute('video');
      } catch (e) {
        banner.show(`You cannot turn your camera on yet: ${e.message}`, 'info');
        return;
      }
    }
    state.videoMuted = !state.meeting.videoMuted;
    state.meeting.setVideoMuted(state.videoMuted);
    renderControls();
  });
  $('leave-button').addEventListener('click', () => leave());
  $('screen-button').disabled = !navigator.mediaDevices?.getDisplayMedia;
  $('screen-button').addEventListener('click', async () => {
    const meeting = state.meeting;
    if (!meeting) return;
    if (meeting.screenTrack) {
      meeting.stopScreenShare();
      return;
    }
    try {
      await meeting.startScreenShare();
    } catch (e) {
      if (e.name !== 'NotAllowedError') banner.show(`Cannot share the screen: ${e.message}`, 'info');
    }
  });
  $('hand-button').addEventListener('click', () => setHand(!state.meeting?.raisedHand));
  const menu = $('reactions-menu');
  for (const [name, emoji] of Object.entries(REACTIONS)) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'reaction-choice';
    b.dataset.reaction = name;
    b.title = name;
    b.textContent = emoji;
    b.addEventListener('click', () => {
      state.meeting?.sendReaction(name);
      menu.hidden = true;
      $('reactions-button').setAttribute('aria-expanded', 'false');
    });
    menu.append(b);
  }
  $('reactions-button').addEventListener('click', () => {
    menu.hidden = !menu.hidden;
    $('reactions-button').setAttribute('aria-expanded', String(!menu.hidden));
  });
  const panel = (id) => () => {
    for (const other of ['chat', 'participants', 'settings']) if (other !== id) $(other).hidden = true;
    $(id).hidden = !$(id).hidden;
    if (id === 'participants') renderParticipants();
    if (id === 'settings') pickers.refresh();
  };
  $('participants-button').addEventListener('click', panel('participants'));
  $('participants-close').addEventListener('click', () => ($('participants').hidden = true));
  $('settings-button').addEventListener('click', panel('settings'));
  $('settings-close').addEventListener('click', () => ($('settings').hidden = true));
  $('view-button').addEventListener('click', () => {
    const next = { tile: 'stage', stage: 'audio-only', 'audio-only': 'tile' }[state.view];
    setView(next);
  });
  const onChoose = (kind, deviceId) => useDevice(kind, deviceId).catch((e) => banner.show(`Cannot use that device: ${e.message}`, 'info'));
  pickers.list.push(
    new DevicePicker({ videoinput: $('prejoin-camera'), audioinput: $('prejoin-mic'), audiooutput: $('prejoin-speaker') }, onChoose),
    new DevicePicker({ videoinput: $('meeting-camera'), audioinput: $('meeting-mic'), audiooutput: $('meeting-speaker') }, onChoose),
  );
  setView(state.view);
  $('record-button').addEventListener('click', async () => {
    const meeting = state.meeting;
    if (!meeting) return;
    try {
      if (meeting.recording?.on) await meeting.stopRecording();
      else await meeting.startRecording('file');
    } catch (e) {
      banner.show(e.message, 'info');
    }
  });
  $('chat-close').addEventListener('click', () => ($('chat').hidden = true));
  $('chat-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('chat-input');
    try {
      if (state.meeting?.sendChat(input.value)) input.value = '';
    } catch (e) {
      fail('bridge', e.message);
    }
  });
  $('rejoin-button').addEventListener('click', () => join(state.room, state.name));
  new ResizeObserver(() => layout()).observe(stage());
  window.addEventListener('pagehide', () => state.meeting?.leave());
}

async function main() {
  if (!config?.hosts?.domain || !config.websocket) {
    show('prejoin');
    fail('config', 'This page is missing its server settings (config.js); ask the operator to check the web service.');
    return;
  }
  show('prejoin');
  const { autoJoin } = setupPrejoin();
  setupMeetingControls();
  await startPreview();
  if (autoJoin) $('join-form').requestSubmit();
}

main();
