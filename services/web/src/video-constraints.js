// What video this page asks the bridge for (docs/protocols.md#bridge-channel, ReceiverVideoConstraints), derived
// from the layout: each remote tile's height picks a quality level, the pinned tile is on stage,
// and last-N comes from the settings. Pure: main.js measures the tiles and sends the message.

import { ColibriClass } from './bridge-channel.js';

/** The heights the bridge's simulcast layers are asked for (low, standard, high definition). */
export const VIDEO_LEVELS = Object.freeze([180, 360, 720]);

/** maxHeight for sources the page has no tile for yet (a newcomer shows up as a thumbnail). */
export const DEFAULT_MAX_HEIGHT = 180;

/**
 * The quality level a tile of `pixels` CSS pixels high needs: the smallest level at least that
 * tall (the highest level for anything taller); 0 for a tile that is not shown.
 */
export function levelForHeight(pixels, levels = VIDEO_LEVELS) {
  if (!(pixels > 0)) return 0;
  for (const level of levels) if (level >= pixels) return level;
  return levels[levels.length - 1];
}

/** The video source name of an endpoint's camera when the offer did not name it. */
export function cameraSourceName(endpoint) {
  return `${endpoint}-v0`;
}

/**
 * The ReceiverVideoConstraints message for a layout.
 * @param {{tiles: {source: string, height: number}[], onStage?: string[], lastN?: number,
 *   defaultMaxHeight?: number, levels?: number[]}} layout tiles: every remote video tile with its
 *   source name and height in CSS pixels; onStage: the pinned (large) tile's source.
 * @returns {object} a complete message (every field present: the bridge keeps absent ones)
 */
export function receiverVideoConstraints({ tiles, onStage = [], lastN = -1, defaultMaxHeight = DEFAULT_MAX_HEIGHT, levels = VIDEO_LEVELS }) {
  const constraints = {};
  for (const { source, height } of [...tiles].sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0))) {
    if (!source) continue;
    constraints[source] = { maxHeight: levelForHeight(height, levels) };
  }
  const stage = onStage.filter((s) => s in constraints);
  return {
    colibriClass: ColibriClass.RECEIVER_VIDEO_CONSTRAINTS,
    lastN: Number.isInteger(lastN) && lastN >= -1 ? lastN : -1,
    selectedSources: [],
    onStageSources: stage,
    defaultConstraints: { maxHeight: defaultMaxHeight },
    constraints,
  };
}

/** Whether two messages ask for the same thing (both built by receiverVideoConstraints). */
export function sameConstraints(a, b) {
  return !!a && !!b && JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Calls `fn` once, `delayMs` after the last of a burst of `schedule()` calls (layout and roster
 * changes come in bursts). Timers are injectable for tests.
 */
export class Debouncer {
  constructor(fn, delayMs, { setTimer = setTimeout, clearTimer = clearTimeout } = {}) {
    this.fn = fn;
    this.delayMs = delayMs;
    // called unbound: the browser's setTimeout refuses another `this`
    this.setTimer = (fn, ms) => setTimer(fn, ms);
    this.clearTimer = (id) => clearTimer(id);
    this.timer = null;
  }

  schedule() {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = this.setTimer(() => {
      this.timer = null;
      this.fn();
    }, this.delayMs);
  }

  cancel() {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
  }
}
