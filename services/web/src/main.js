// The meeting page: pre-join (preview, names), the meeting (tiles, controls, chat), and the
// screen after leaving. Behaviour lives in Meeting (meeting.js); this file wires it to the DOM.

import { bestGrid } from './layout.js';
import { Meeting } from './meeting.js';
import { parseDisplayName, parseRoomName, roomFromPath } from './room.js';
import { reconnectDelay } from './bridge-channel.js';
import { Banner, chatLine, createTile, ICONS, setTileTrack, updateTile } from './ui.js';
import { Debouncer, receiverVideoConstraints } from './video-constraints.js';

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
};

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
};
window.parley = parley;

function show(screen) {
  for (const id of ['prejoin', 'meeting', 'left']) $(id).hidden = id !== screen;
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
    state.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720 } });
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
  if (state.pinned && !tiles.has(state.pinned)) state.pinned = null;
  el.classList.toggle('has-pinned', !!state.pinned);
  for (const [endpoint, tile] of tiles) updateTile(tile, { pinned: endpoint === state.pinned });
  if (state.pinned) {
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
  $('participant-count').textContent = `${tiles.size} ${tiles.size === 1 ? 'person' : 'people'}`;
  constraints.schedule();
}

function pin(endpoint) {
  state.pinned = state.pinned === endpoint || !tiles.has(endpoint) ? null : endpoint;
  layout();
}

/** Tell the bridge what video the layout needs: tile heights, the pinned tile, last-N. */
function sendVideoConstraints() {
  const meeting = state.meeting;
  if (!meeting) return;
  const remote = [...tiles].filter(([endpoint]) => endpoint !== meeting.endpointId);
  const msg = receiverVideoConstraints({
    tiles: remote.map(([endpoint, tile]) => ({ source: meeting.roster.videoSourceOf(endpoint), height: tile.clientHeight })),
    onStage: state.pinned ? [meeting.roster.videoSourceOf(state.pinned)] : [],
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
  mic.disabled = !state.stream?.getAudioTracks().length;
  cam.disabled = !state.stream?.getVideoTracks().length;
  const local = tiles.get(m.endpointId);
  if (local) updateTile(local, { audioMuted: m.audioMuted, videoMuted: m.videoMuted });
}

function onRosterChange(kind, endpoint, person) {
  const meeting = state.meeting;
  if (kind === 'left') {
    tiles.get(endpoint)?.remove();
    tiles.delete(endpoint);
    layout();
    return;
  }
  let tile = tiles.get(endpoint);
  if (!tile && person) {
    tile = createTile({ endpoint, nick: person.nick });
    tile.addEventListener('click', () => pin(endpoint));
    tile.title = 'Click to show large';
    tiles.set(endpoint, tile);
    stage().append(tile);
    layout();
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
      }
    }
  }
  if (person) {
    updateTile(tile, {
      nick: person.nick, audioMuted: person.audioMuted, videoMuted: person.videoMuted, quality: person.quality,
      forwarded: meeting.roster.isForwarded(endpoint),
    });
  }
  if (kind === 'track') constraints.schedule();
  updateTile(tile, { speaking: meeting.roster.dominant === endpoint });
}

function watchFirstFrame(video) {
  if (parley.timings.firstRemoteFrameMs !== undefined || !video.requestVideoFrameCallback) return;
  video.requestVideoFrameCallback(() => {
    if (parley.timings.firstRemoteFrameMs === undefined) {
      parley.timings.firstRemoteFrameMs = Math.round(performance.now() - parley.timings.joinClicked);
    }
  });
}

/** A Meeting wired to the page (its events update the screen while it is the current one). */
function createMeeting(room, name) {
  const meeting = new Meeting(config, { room, displayName: name, stream: state.stream });
  const current = () => state.meeting === meeting;
  renderRecording(null); // a new meeting learns the status from the focus's presence
  meeting.setAudioMuted(state.audioMuted || !state.stream?.getAudioTracks().length);
  meeting.setVideoMuted(state.videoMuted || !state.stream?.getVideoTracks().length);
  meeting.roster.onChange((...args) => current() && onRosterChange(...args));
  meeting.addEventListener('status', ({ detail }) => {
    if (!current()) return;
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
  meeting.addEventListener('chat', ({ detail }) => {
    if (!current()) return;
    const log = $('chat-log');
    log.append(chatLine(detail));
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
}

async function join(room, name) {
  state.room = room;
  state.name = name;
  banner.hide();
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

/** Everyone sees whether the meeting is recorded or streamed; the button starts and stops it. */
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
  // state.audioMuted/videoMuted outlive a reconnect (the next Meeting starts with them)
  $('mic-button').addEventListener('click', () => {
    state.audioMuted = !state.meeting.audioMuted;
    state.meeting.setAudioMuted(state.audioMuted);
    renderControls();
  });
  $('cam-button').addEventListener('click', () => {
    state.videoMuted = !state.meeting.videoMuted;
    state.meeting.setVideoMuted(state.videoMuted);
    renderControls();
  });
  $('leave-button').addEventListener('click', () => leave());
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
