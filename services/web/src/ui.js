// DOM pieces of the meeting page: icons, tiles, chat lines, the banner. Rendering only; the
// page's behaviour is wired in main.js.

import { initials } from './room.js';

const svg = (path) => `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${path}</svg>`;

export const ICONS = {
  mic: svg('<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3"/>'),
  micOff: svg('<path d="M3 3l18 18M9 9v2a3 3 0 0 0 5 2.2M15 10V6a3 3 0 0 0-5.7-1.3M5 11a7 7 0 0 0 11.5 5.3M19 11a7 7 0 0 1-.6 2.8M12 18v3"/>'),
  cam: svg('<rect x="3" y="6" width="13" height="12" rx="2"/><path d="M16 10l5-3v10l-5-3z"/>'),
  camOff: svg('<path d="M3 3l18 18M16 16v0a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h1M10 6h4a2 2 0 0 1 2 2v3l5-3v9"/>'),
  chat: svg('<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/>'),
  screen: svg('<rect x="2" y="4" width="20" height="13" rx="2"/><path d="M8 21h8M12 17v4M12 14V8M9 11l3-3 3 3"/>'),
  hand: svg('<path d="M8 13V5.5a1.5 1.5 0 0 1 3 0V12M11 11V4a1.5 1.5 0 0 1 3 0v7M14 11V5.5a1.5 1.5 0 0 1 3 0V14a7 7 0 0 1-7 7h-.5A6.5 6.5 0 0 1 4 16l-1.2-3a1.5 1.5 0 0 1 2.7-1.3L8 15"/>'),
  smile: svg('<circle cx="12" cy="12" r="9"/><path d="M8.5 14.5a4.5 4.5 0 0 0 7 0M9 9.5h.01M15 9.5h.01"/>'),
  people: svg('<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20a6.5 6.5 0 0 1 13 0M16 4.6a3.5 3.5 0 0 1 0 6.8M18 14.5a6.5 6.5 0 0 1 3.5 5.5"/>'),
  grid: svg('<rect x="3" y="3" width="8" height="8" rx="1"/><rect x="13" y="3" width="8" height="8" rx="1"/><rect x="3" y="13" width="8" height="8" rx="1"/><rect x="13" y="13" width="8" height="8" rx="1"/>'),
  stage: svg('<rect x="3" y="3" width="18" height="12" rx="1"/><rect x="3" y="17" width="5" height="4" rx="1"/><rect x="10" y="17" width="5" height="4" rx="1"/>'),
  speaker: svg('<path d="M4 9v6h4l5 4V5L8 9zM16.5 8.5a5 5 0 0 1 0 7"/>'),
  settings: svg('<circle cx="12" cy="12" r="3"/><path d="M19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1z"/>'),
  leave: svg('<path d="M4 15c5-4 11-4 16 0l-2 3-3-1v-3c-2-.6-4-.6-6 0v3l-3 1z"/>'),
};

/** A participant tile; `local` marks our own. */
export function createTile({ endpoint, nick, local = false }) {
  const tile = document.createElement('article');
  tile.className = `tile${local ? ' local' : ''}`;
  tile.dataset.endpoint = endpoint;
  tile.dataset.audioMuted = 'false';
  tile.dataset.videoOff = 'true';
  tile.innerHTML = `
    <video autoplay playsinline ${local ? 'muted' : ''}></video>
    <span class="avatar"></span>
    <div class="tile-footer">
      <span class="tile-name"><span class="mic-off" title="Microphone muted">${ICONS.micOff}</span><span class="nick"></span></span>
      <span class="tile-quality" data-level="unknown" title="Connection quality"></span>
    </div>
    <span class="tile-hand" title="Hand raised" hidden>${ICONS.hand}</span>
    <span class="tile-moderator" title="Moderator" hidden>★</span>
    <div class="tile-interrupted" hidden>Connection interrupted</div>`;
  if (!local) {
    const audio = document.createElement('audio');
    audio.autoplay = true;
    tile.append(audio);
  }
  updateTile(tile, { nick });
  return tile;
}

export function updateTile(tile, { nick, audioMuted, videoMuted, quality, speaking, forwarded, pinned, hand, moderator, interrupted }) {
  if (hand !== undefined) tile.querySelector('.tile-hand').hidden = !hand;
  if (moderator !== undefined) tile.querySelector('.tile-moderator').hidden = !moderator;
  if (interrupted !== undefined) {
    tile.dataset.interrupted = String(interrupted);
    tile.querySelector('.tile-interrupted').hidden = !interrupted;
  }
  if (nick !== undefined) {
    tile.querySelector('.nick').textContent = nick;
    tile.querySelector('.avatar').textContent = initials(nick);
    tile.setAttribute('aria-label', nick);
  }
  if (audioMuted !== undefined) tile.dataset.audioMuted = String(audioMuted);
  if (videoMuted !== undefined) tile.dataset.videoMuted = String(videoMuted);
  if (quality !== undefined) tile.querySelector('.tile-quality').dataset.level = quality;
  if (speaking !== undefined) tile.classList.toggle('speaking', speaking);
  // a video the bridge does not forward (last-N) would show its last frame frozen: show initials
  if (forwarded !== undefined) tile.dataset.forwarded = String(forwarded);
  if (pinned !== undefined) tile.classList.toggle('pinned', pinned);
  const hasVideo = !!tile.querySelector('video').srcObject;
  tile.dataset.videoOff = String(!hasVideo || tile.dataset.videoMuted === 'true' || tile.dataset.forwarded === 'false');
}

/** Attach (or detach, with null) a track to the tile's <video>/<audio> element. */
export function setTileTrack(tile, kind, track) {
  const el = tile.querySelector(kind === 'video' ? 'video' : 'audio');
  if (!el) return;
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) el.play?.().catch(() => {});
  updateTile(tile, {});
}

/** Most chat lines a page keeps: a guest flooding the room's chat cannot grow every page. */
export const MAX_CHAT_LINES = 500;

/** Append `node` to `list`, dropping the oldest children beyond `max`. */
export function appendBounded(list, node, max) {
  list.append(node);
  while (list.children.length > max) list.firstElementChild.remove();
}

export function chatLine({ displayName, text, mine }) {
  const li = document.createElement('li');
  li.className = `chat-message${mine ? ' mine' : ''}`;
  const who = document.createElement('div');
  who.className = 'who';
  who.textContent = mine ? 'You' : displayName;
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text;
  li.append(who, body);
  return li;
}

export class Banner {
  constructor(el) {
    this.el = el;
    el.querySelector('.banner-close').addEventListener('click', () => this.hide());
  }

  show(text, kind = 'error') {
    this.el.dataset.kind = kind;
    this.el.querySelector('.banner-text').textContent = text;
    this.el.hidden = false;
  }

  hide() {
    this.el.hidden = true;
  }
}

/** One row of the participant list. */
export function participantRow({ endpoint, nick, audioMuted, videoMuted, raisedHand, moderator, speaking, self }) {
  const li = document.createElement('li');
  li.className = `participant${speaking ? ' speaking' : ''}`;
  li.dataset.endpoint = endpoint;
  li.dataset.hand = String(!!raisedHand);
  const name = document.createElement('span');
  name.className = 'participant-name';
  name.textContent = self ? `${nick} (you)` : nick;
  const badges = document.createElement('span');
  badges.className = 'participant-badges';
  if (moderator) badges.append(badge('★', 'Moderator', 'moderator'));
  if (raisedHand) badges.append(badge(ICONS.hand, 'Hand raised', 'hand'));
  if (speaking) badges.append(badge(ICONS.speaker, 'Speaking', 'speaking'));
  badges.append(badge(audioMuted ? ICONS.micOff : ICONS.mic, audioMuted ? 'Microphone muted' : 'Microphone on', audioMuted ? 'mic-muted' : 'mic-on'));
  if (videoMuted) badges.append(badge(ICONS.camOff, 'Camera off', 'cam-off'));
  li.append(name, badges);
  return li;
}

function badge(text, title, kind) {
  const el = document.createElement('span');
  el.className = `participant-badge ${kind}`;
  el.dataset.kind = kind;
  el.title = title;
  // our own icons (static SVG markup) or plain text
  if (text.startsWith('<svg')) el.innerHTML = text;
  else el.textContent = text;
  return el;
}
