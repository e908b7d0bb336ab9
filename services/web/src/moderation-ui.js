// The moderator's controls on the page: a menu on each participant's tile (mute, stop video,
// kick, make moderator), "mute everyone", the meeting's password and lobby, and the lobby's
// knock notifications with Admit / Deny. Also what a participant is told: muted by a moderator,
// kicked. The state and stanzas are Moderation's (moderation.js).

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
  constructor(moderation, { banner, toolbar, onKicked }) {
    this.m = moderation;
    this.banner = banner;
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
    moderation.addEventListener('role', () => this.render());
    moderation.addEventListener('change', () => this.render());
    moderation.addEventListener('knock', ({ detail }) => this.#knock(detail));
    moderation.addEventListener('knock-left', ({ detail }) => document.getElementById(`knock-${detail.nick}`)?.remove());
    moderation.addEventListener('muted', ({ detail }) => {
      const what = detail.kind === 'audio' ? 'microphone' : 'camera';
      banner.show(`${detail.actorName || 'A moderator'} turned off your ${what}.`, 'info');
    });
    moderation.addEventListener('kicked', ({ detail }) => onKicked(detail));
  }

  close() {
    this.requests.remove();
    this.tools.remove();
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
