// The moderator's controls on the page: a menu on each participant's tile (mute, stop video,
// kick, make moderator), "mute everyone", the meeting's password and lobby, and the lobby's
// knock notifications with Admit / Deny, AV moderation in the participants panel (start/stop per
// kind, Allow / Reject for each participant asking to unmute). Also what a participant is told and
// may do: muted by a moderator, kicked, "Ask to unmute" (raises the hand) while the microphone
// stays locked until a moderator allows it. The state and stanzas are Moderation's (moderation.js).

import { promptDialog } from './auth.js';

function el(tag, attrs = {}, text = '') {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

export class ModerationUi {
  /**
   * @param {import('./moderation.js').Moderation} moderation
   * @param {{banner: {show: Function}, toolbar: HTMLElement, onKicked: Function}} page
   */
  constructor(moderation, { banner, toolbar, panel, onKicked, raiseHand = () => {}, onChange = () => {} }) {
    this.m = moderation;
    this.banner = banner;
    this.raiseHand = raiseHand;
    this.onChange = onChange;
    this.tiles = new Map();
    this.requests = el('div', { id: 'lobby-requests', class: 'lobby-requests' });
    document.body.append(this.requests);
    this.tools = el('div', { id: 'moderator-tools', class: 'moderator-tools' });
    this.tools.hidden = true;
    const muteAll = el('button', { id: 'mute-all-button', type: 'button', class: 'tool' }, 'Mute everyone');
    muteAll.addEventListener('click', () => this.m.muteAll('audio'));
    const password = el('button', { id: 'password-button', type: 'button', class: 'tool' }, 'Password');
    password.addEventListener('click', () => this.#askPassword());
    const lobby = el('button', { id: 'lobby-button', type: 'button', class: 'tool', 'aria-pressed': 'false' }, 'Lobby');
    lobby.addEventListener('click', () => this.#toggleLobby(lobby));
    this.tools.append(muteAll, password, lobby);
    toolbar.append(this.tools);
    this.ask = el('button', { id: 'ask-unmute-button', type: 'button', class: 'tool' }, 'Ask to unmute');
    this.ask.hidden = true;
    this.ask.addEventListener('click', () => {
      this.raiseHand(true);
      this.ask.disabled = true;
      this.ask.textContent = 'Asked to unmute';
    });
    toolbar.append(this.ask);
    // the participants panel: AV moderation switches and the requests to unmute
    this.av = el('section', { id: 'av-moderation', class: 'av-moderation' });
    this.av.hidden = true;
    this.avButtons = {};
    for (const kind of ['audio', 'video']) {
      const b = el('button', { id: `av-moderation-${kind}`, type: 'button', 'aria-pressed': 'false', 'data-kind': kind });
      b.addEventListener('click', () => this.#toggleAv(kind));
      this.avButtons[kind] = b;
      this.av.append(b);
    }
    this.unmuteRequests = el('ol', { id: 'unmute-requests', class: 'unmute-requests' });
    this.av.append(this.unmuteRequests);
    panel?.querySelector('header')?.after(this.av);
    moderation.addEventListener('av-moderation', ({ detail }) => {
      const what = detail.kind === 'audio' ? 'microphones' : 'cameras';
      if (!this.m.isModerator) {
        banner.show(detail.enabled
          ? `A moderator now decides who may turn on ${what}: use “Ask to unmute”.`
          : `Everyone may turn on ${what} again.`, 'info');
      }
      this.render();
    });
    moderation.addEventListener('approved', ({ detail }) => {
      this.raiseHand(false);
      banner.show(`A moderator allowed you to turn on your ${detail.kind === 'audio' ? 'microphone' : 'camera'}.`, 'info');
      this.render();
    });
    moderation.addEventListener('rejected', ({ detail }) => {
      this.raiseHand(false);
      banner.show(`A moderator did not allow you to turn on your ${detail.kind === 'audio' ? 'microphone' : 'camera'}.`, 'info');
      this.render();
    });
    moderation.addEventListener('role', () => this.render());
    moderation.addEventListener('change', () => this.render());
    moderation.addEventListener('knock', ({ detail }) => this.#knock(detail));
    moderation.addEventListener('knock-left', ({ detail }) => document.getElementById(`knock-${detail.nick}`)?.remove());
    moderation.addEventListener('muted', ({ detail }) => {
      const what = detail.kind === 'audio' ? 'microphone' : 'camera';
      banner.show(`${detail.actorName || 'A moderator'} turned off your ${what}.`, 'info');
      this.render();
    });
    moderation.addEventListener('kicked', ({ detail }) => onKicked(detail));
  }

  close() {
    this.requests.remove();
    this.tools.remove();
    this.ask.remove();
    this.av.remove();
    for (const tile of this.tiles.values()) tile.querySelector('.moderator-menu')?.remove();
    this.tiles.clear();
  }

  /** A remote participant's tile gets a menu (shown to moderators). */
  decorate(tile, endpoint) {
    if (this.tiles.get(endpoint) === tile) return;
    this.tiles.set(endpoint, tile);
    const menu = el('div', { class: 'moderator-menu', 'data-endpoint': endpoint });
    const toggle = el('button', { type: 'button', class: 'moderator-menu-button', title: 'Moderate', 'aria-label': 'Moderate' }, '⋮');
    const items = el('div', { class: 'moderator-menu-items' });
    items.hidden = true;
    const action = (name, label, run) => {
      const b = el('button', { type: 'button', 'data-action': name }, label);
      b.addEventListener('click', async (event) => {
        event.stopPropagation();
        items.hidden = true;
        try {
          await run();
        } catch (e) {
          this.banner.show(`${label} failed: ${e.message}`, 'info');
        }
      });
      items.append(b);
    };
    action('mute', 'Mute', () => this.m.mute(endpoint, 'audio'));
    action('mute-video', 'Stop video', () => this.m.mute(endpoint, 'video'));
    action('kick', 'Remove from meeting', () => this.m.kick(endpoint));
    action('moderator', 'Make moderator', () => this.m.makeModerator(endpoint));
    toggle.addEventListener('click', (event) => {
      event.stopPropagation();
      items.hidden = !items.hidden;
    });
    menu.append(toggle, items);
    tile.append(menu);
    this.render();
  }

  forget(endpoint) {
    this.tiles.delete(endpoint);
  }

  render() {
    const mod = this.m.isModerator;
    this.tools.hidden = !mod;
    for (const [endpoint, tile] of this.tiles) {
      const menu = tile.querySelector('.moderator-menu');
      if (!menu) continue;
      const member = this.m.members.get(endpoint);
      menu.hidden = !mod || !member;
      const promote = menu.querySelector('[data-action="moderator"]');
      if (promote) promote.hidden = member?.role === 'moderator';
      tile.dataset.role = member?.role ?? '';
    }
    document.body.dataset.moderator = String(mod);
    this.#renderAv();
    this.onChange();
  }

  /** AV moderation: the moderator's switches and requests; the participant's "Ask to unmute". */
  #renderAv() {
    const mod = this.m.isModerator;
    const moderated = ['audio', 'video'].filter((k) => this.m.avModeration[k]);
    this.av.hidden = !mod;
    for (const [kind, b] of Object.entries(this.avButtons)) {
      const on = this.m.avModeration[kind];
      b.setAttribute('aria-pressed', String(on));
      b.textContent = `${on ? 'Stop' : 'Start'} ${kind} moderation`;
    }
    const locked = ['audio', 'video'].some((k) => this.m.locked(k));
    const people = this.m.meeting.roster.people;
    const asking = mod && moderated.length
      ? [...people.values()].filter((p) => p.raisedHand && this.m.members.get(p.endpoint)?.role !== 'moderator')
      : [];
    const rows = asking.map((p) => {
      const row = el('li', { class: 'unmute-request', 'data-nick': p.endpoint });
      row.append(el('span', { class: 'unmute-request-name' }, `${p.nick || p.endpoint} asks to unmute`));
      const allow = el('button', { type: 'button', class: 'approve primary' }, 'Allow');
      const reject = el('button', { type: 'button', class: 'reject' }, 'Reject');
      const decide = (run) => Promise.all(moderated.map((kind) => run(p.endpoint, kind)))
        .then(() => row.remove(), (e) => this.banner.show(e.message, 'info'));
      allow.addEventListener('click', () => decide((nick, kind) => this.m.approve(nick, kind)));
      reject.addEventListener('click', () => decide((nick, kind) => this.m.reject(nick, kind)));
      row.append(allow, reject);
      return row;
    });
    this.unmuteRequests.replaceChildren(...rows);
    this.ask.hidden = mod || !locked;
    if (!locked || !this.m.meeting.raisedHand) {
      this.ask.disabled = false;
      this.ask.textContent = 'Ask to unmute';
    }
  }

  async #toggleAv(kind) {
    const on = !this.m.avModeration[kind];
    try {
      await this.m.setAvModeration(kind, on);
    } catch (e) {
      this.banner.show(`${kind} moderation could not be changed: ${e.message}`, 'info');
    }
  }

  #knock({ nick, name }) {
    if (document.getElementById(`knock-${nick}`)) return;
    const row = el('div', { id: `knock-${nick}`, class: 'knock', 'data-nick': nick });
    row.append(el('span', { class: 'knock-name' }, `${name} wants to join`));
    const admit = el('button', { type: 'button', class: 'admit primary' }, 'Admit');
    const deny = el('button', { type: 'button', class: 'deny' }, 'Deny');
    admit.addEventListener('click', () => this.m.admit(nick).then(() => row.remove(), (e) => this.banner.show(e.message, 'info')));
    deny.addEventListener('click', () => this.m.deny(nick).then(() => row.remove(), (e) => this.banner.show(e.message, 'info')));
    row.append(admit, deny);
    this.requests.append(row);
  }

  async #askPassword() {
    const { button, values } = await promptDialog({
      id: 'set-password-dialog',
      title: 'Meeting password',
      text: 'Participants will need it to join (empty: no password).',
      fields: [{ name: 'password', label: 'Password', type: 'password' }],
      buttons: [{ value: 'ok', label: 'Set', primary: true }, { value: 'cancel', label: 'Cancel' }],
    });
    if (button !== 'ok') return;
    try {
      await this.m.setPassword(values.password);
      this.banner.show(values.password ? 'The meeting now has a password.' : 'The meeting has no password any more.', 'info');
    } catch (e) {
      this.banner.show(`Setting the password failed: ${e.message}`, 'info');
    }
  }

  async #toggleLobby(button) {
    const on = button.getAttribute('aria-pressed') !== 'true';
    try {
      await this.m.setLobby(on);
      button.setAttribute('aria-pressed', String(on));
      this.banner.show(on ? 'Lobby on: new participants wait for a moderator.' : 'Lobby off.', 'info');
    } catch (e) {
      this.banner.show(`The lobby could not be changed: ${e.message}`, 'info');
    }
  }
}
