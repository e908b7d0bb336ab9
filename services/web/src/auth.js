// Who we are to the meeting server (docs/authentication.md): a JWT from the page's `?jwt=`
// (passed on as `?token=` on the XMPP URL, as Jitsi's clients do), an account and password
// (AUTH_TYPE=internal: a login prompt, or "join as guest" on the guests' host), and the prompts
// a room may need: its password, waiting for the host.

/** The token of the page URL (`?jwt=`), or ''. */
export function tokenFromUrl(search = location.search) {
  return new URLSearchParams(search).get('jwt') ?? '';
}

/**
 * A small modal form. `fields`: [{name, label, type}]; `buttons`: [{value, label, primary}].
 * Resolves with {button, values}.
 */
export function promptDialog({ id, title, text = '', fields = [], buttons }) {
  return new Promise((resolve) => {
    const dialog = document.createElement('dialog');
    dialog.id = id;
    dialog.className = 'parley-dialog';
    const form = document.createElement('form');
    form.method = 'dialog';
    const h = document.createElement('h2');
    h.textContent = title;
    form.append(h);
    if (text) {
      const p = document.createElement('p');
      p.className = 'dialog-text';
      p.textContent = text;
      form.append(p);
    }
    for (const f of fields) {
      const label = document.createElement('label');
      label.textContent = f.label;
      const input = document.createElement('input');
      input.name = f.name;
      input.type = f.type ?? 'text';
      input.autocomplete = f.type === 'password' ? 'current-password' : 'username';
      label.append(input);
      form.append(label);
    }
    const row = document.createElement('div');
    row.className = 'dialog-buttons';
    for (const b of buttons) {
      const button = document.createElement('button');
      button.value = b.value;
      button.textContent = b.label;
      button.className = b.primary ? 'primary' : '';
      button.formNoValidate = true;
      row.append(button);
    }
    form.append(row);
    dialog.append(form);
    document.body.append(dialog);
    dialog.addEventListener('close', () => {
      const values = Object.fromEntries(fields.map((f) => [f.name, form.elements[f.name].value]));
      dialog.remove();
      resolve({ button: dialog.returnValue, values });
    });
    dialog.showModal();
    form.querySelector('input')?.focus();
  });
}

/**
 * How to log in: {token} with ?jwt=, {jid, password} after the login prompt (internal
 * accounts), {guest: true} for the guests' host, {} without authentication; null: cancelled.
 */
export async function credentials(config, failure = '') {
  const mode = config.authentication ?? 'none';
  if (mode === 'jwt') return { token: tokenFromUrl() };
  if (mode !== 'internal') return {};
  const guests = !!config.hosts.anonymousdomain;
  const { button, values } = await promptDialog({
    id: 'login-dialog',
    title: 'Log in to start the meeting',
    text: failure || (guests ? 'Hosts log in; guests may join once a host is there.' : 'This server needs an account.'),
    fields: [
      { name: 'username', label: 'User name' },
      { name: 'password', label: 'Password', type: 'password' },
    ],
    buttons: [
      { value: 'login', label: 'Log in', primary: true },
      ...(guests ? [{ value: 'guest', label: 'Join as guest' }] : []),
      { value: 'cancel', label: 'Cancel' },
    ],
  });
  if (button === 'guest') return { guest: true };
  if (button !== 'login') return null;
  const user = values.username.trim().toLowerCase();
  return { jid: `${user}@${config.hosts.domain}`, password: values.password };
}

/** The room's password, or null when cancelled. */
export async function roomPassword(retry) {
  const { button, values } = await promptDialog({
    id: 'password-dialog',
    title: 'This meeting has a password',
    text: retry ? 'That password is not right. Try again.' : 'Enter the meeting password to join.',
    fields: [{ name: 'password', label: 'Password', type: 'password' }],
    buttons: [{ value: 'ok', label: 'Join', primary: true }, { value: 'cancel', label: 'Cancel' }],
  });
  return button === 'ok' ? values.password : null;
}
