import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { initials, parseDisplayName, parseRoomName, roomFromPath } from '../src/room.js';

describe('room names', () => {
  it('normalizes what people type', () => {
    assert.deepEqual(parseRoomName('  Weekly Standup '), { room: 'weekly-standup' });
    assert.deepEqual(parseRoomName('Café.2026'), { room: 'café.2026' });
    assert.match(parseRoomName('').error, /Enter a meeting name/);
    assert.match(parseRoomName('a@b').error, /letters, digits/);
    assert.match(parseRoomName('x/y').error, /letters, digits/);
    assert.match(parseRoomName('x'.repeat(65)).error, /at most 64/);
  });

  it('reads the room from the page path', () => {
    assert.equal(roomFromPath('/'), undefined);
    assert.equal(roomFromPath('/Team%20Sync'), 'team-sync');
    assert.equal(roomFromPath('/bad@room'), undefined);
  });

  it('checks display names and makes initials', () => {
    assert.deepEqual(parseDisplayName('  Ada   Lovelace '), { name: 'Ada Lovelace' });
    assert.match(parseDisplayName(' ').error, /Enter your name/);
    assert.equal(initials('Ada Lovelace'), 'AL');
    assert.equal(initials('bob'), 'BO');
    assert.equal(initials(''), '?');
  });
});
