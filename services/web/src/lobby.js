// Knocking in a room's lobby (services/xmpp/modules/lobby.py, Jitsi's mod_muc_lobby_rooms): join
// `<room>@lobby.<domain>` with our name and wait; a moderator's admission arrives as a XEP-0045
// mediated invitation from the room, a denial as our unavailable presence with status 307.

import { $pres } from 'strophe.js';

import { mucUser } from './moderation.js';

/** Resolves when admitted; rejects with an Error whose `denied` is true when a moderator said no. */
export function knock(conn, lobbyJid, { nick, name, roomJid, cancelled = () => false }) {
  return new Promise((resolve, reject) => {
    const handlers = [];
    const done = () => handlers.forEach((h) => conn.deleteHandler(h));
    handlers.push(conn.addHandler((m) => {
      const from = m.getAttribute('from') ?? '';
      const invite = m.getElementsByTagName('invite')[0];
      if (from === roomJid && invite) {
        done();
        resolve();
        return false;
      }
      return true;
    }, null, 'message'));
    handlers.push(conn.addHandler((p) => {
      if (p.getAttribute('from') !== `${lobbyJid}/${nick}`) return true;
      const type = p.getAttribute('type');
      if (type === 'error' || (type === 'unavailable' && !cancelled())) {
        done();
        const denied = type === 'unavailable' && (mucUser(p)?.codes ?? []).includes('307');
        reject(Object.assign(new Error(denied ? 'A moderator did not let you in.' : 'The lobby is closed.'), { denied }));
        return false;
      }
      return true;
    }, null, 'presence'));
    conn.send($pres({ to: `${lobbyJid}/${nick}` }).c('nick', { xmlns: 'http://jabber.org/protocol/nick' }).t(name).tree());
  });
}
