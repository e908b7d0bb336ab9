// Meeting names: what the URL and the form accept, and the MUC room node they map to. Pure.

const MAX_LENGTH = 64;

/**
 * Normalize what a person typed into a room node: lower case, spaces to dashes, only
 * letters, digits, '-', '_' and '.'. Returns {room} or {error} with a message for the form.
 */
export function parseRoomName(input) {
  const raw = String(input ?? '').trim();
  if (!raw) return { error: 'Enter a meeting name.' };
  const room = raw.toLowerCase().replace(/\s+/g, '-');
  if (room.length > MAX_LENGTH) return { error: `Meeting names are at most ${MAX_LENGTH} characters.` };
  if (!/^[\p{L}\p{N}][\p{L}\p{N}._-]*$/u.test(room)) {
    return { error: 'Use letters, digits, dashes, dots or underscores in the meeting name.' };
  }
  return { room };
}

/** The room named by a page path like `/weekly-standup` (undefined for `/`). */
export function roomFromPath(pathname) {
  const segment = decodeURIComponent(String(pathname ?? '').replace(/^\/+|\/+$/g, '').split('/')[0] ?? '');
  if (!segment) return undefined;
  const parsed = parseRoomName(segment);
  return parsed.room;
}

export function parseDisplayName(input) {
  const name = String(input ?? '').trim().replace(/\s+/g, ' ');
  if (!name) return { error: 'Enter your name so others know who you are.' };
  if (name.length > 48) return { error: 'Names are at most 48 characters.' };
  return { name };
}

/** Up to two initials for an avatar. */
export function initials(name) {
  const words = String(name ?? '').trim().split(/\s+/).filter(Boolean);
  if (!words.length) return '?';
  const letters = words.length === 1 ? [...words[0]].slice(0, 2) : [[...words[0]][0], [...words.at(-1)][0]];
  return letters.join('').toUpperCase();
}
