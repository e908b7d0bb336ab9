import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  cameraSourceName, Debouncer, DEFAULT_MAX_HEIGHT, levelForHeight, receiverVideoConstraints, sameConstraints,
} from '../src/video-constraints.js';

describe('levelForHeight', () => {
  it('picks the smallest level at least as tall as the tile', () => {
    assert.equal(levelForHeight(108), 180);
    assert.equal(levelForHeight(180), 180);
    assert.equal(levelForHeight(181), 360);
    assert.equal(levelForHeight(338), 360);
    assert.equal(levelForHeight(600), 720);
    assert.equal(levelForHeight(1400), 720);
  });

  it('asks nothing for a tile that is not shown', () => {
    assert.equal(levelForHeight(0), 0);
    assert.equal(levelForHeight(undefined), 0);
    assert.equal(levelForHeight(Number.NaN), 0);
  });
});

describe('receiverVideoConstraints', () => {
  it('has the shape services/common/bridge_channel.py defines, every field present', () => {
    const msg = receiverVideoConstraints({
      tiles: [{ source: 'bbb-v0', height: 108 }, { source: 'aaa-v0', height: 620 }],
      onStage: ['aaa-v0'],
      lastN: 4,
    });
    assert.deepEqual(msg, {
      colibriClass: 'ReceiverVideoConstraints',
      lastN: 4,
      selectedSources: [],
      onStageSources: ['aaa-v0'],
      defaultConstraints: { maxHeight: DEFAULT_MAX_HEIGHT },
      constraints: { 'aaa-v0': { maxHeight: 720 }, 'bbb-v0': { maxHeight: 180 } },
    });
  });

  it('grid tiles of a desktop stage ask for the standard level and nobody is on stage', () => {
    const msg = receiverVideoConstraints({ tiles: [{ source: 'x-v0', height: 340 }, { source: 'y-v0', height: 340 }] });
    assert.deepEqual(msg.onStageSources, []);
    assert.equal(msg.lastN, -1);
    assert.deepEqual(Object.values(msg.constraints).map((c) => c.maxHeight), [360, 360]);
  });

  it('drops an on-stage source without a tile, and a bad last-N', () => {
    const msg = receiverVideoConstraints({ tiles: [{ source: 'x-v0', height: 340 }], onStage: ['gone-v0'], lastN: -7 });
    assert.deepEqual(msg.onStageSources, []);
    assert.equal(msg.lastN, -1);
    assert.equal(receiverVideoConstraints({ tiles: [], lastN: 1.5 }).lastN, -1);
    assert.equal(receiverVideoConstraints({ tiles: [], lastN: 0 }).lastN, 0);
  });

  it('does not depend on tile order, so an unchanged layout is not resent', () => {
    const a = receiverVideoConstraints({ tiles: [{ source: 'a-v0', height: 100 }, { source: 'b-v0', height: 400 }] });
    const b = receiverVideoConstraints({ tiles: [{ source: 'b-v0', height: 400 }, { source: 'a-v0', height: 100 }] });
    assert.equal(JSON.stringify(a), JSON.stringify(b));
    assert.ok(sameConstraints(a, b));
    assert.ok(!sameConstraints(a, receiverVideoConstraints({ tiles: [{ source: 'a-v0', height: 400 }, { source: 'b-v0', height: 400 }] })));
    assert.ok(!sameConstraints(a, null));
  });

  it('names an endpoint camera as the bridge does', () => {
    assert.equal(cameraSourceName('abcd1234'), 'abcd1234-v0');
  });
});

describe('Debouncer', () => {
  function clock() {
    const timers = new Map();
    let next = 1;
    let now = 0;
    return {
      setTimer: (fn, ms) => {
        timers.set(next, { fn, at: now + ms });
        return next++;
      },
      clearTimer: (id) => timers.delete(id),
      advance(ms) {
        now += ms;
        for (const [id, t] of [...timers]) {
          if (t.at <= now) {
            timers.delete(id);
            t.fn();
          }
        }
      },
    };
  }

  it('runs once after a burst settles', () => {
    const c = clock();
    let calls = 0;
    const d = new Debouncer(() => calls++, 250, c);
    d.schedule();
    c.advance(100);
    d.schedule();
    c.advance(100);
    d.schedule();
    c.advance(200);
    assert.equal(calls, 0);
    c.advance(60);
    assert.equal(calls, 1);
    c.advance(1000);
    assert.equal(calls, 1);
  });

  it('can be cancelled', () => {
    const c = clock();
    let calls = 0;
    const d = new Debouncer(() => calls++, 250, c);
    d.schedule();
    d.cancel();
    c.advance(1000);
    assert.equal(calls, 0);
  });
});
