// What the stage shows and what video that asks of the bridge. Pure.
//
// Views: 'tile' (everyone in a grid), 'stage' (one large tile following the dominant speaker,
// the others as thumbnails) and 'audio-only' (no video received at all). Whatever the view, a
// pinned tile is on stage, and a screen share someone starts goes on stage by itself (the newest
// one) unless something is pinned.

import { levelForHeight, VIDEO_LEVELS } from './video-constraints.js';
import { ColibriClass } from './bridge-channel.js';

export const VIEWS = Object.freeze(['tile', 'stage', 'audio-only']);

/** maxHeight asked for a screen share on stage: its full resolution. */
export const SCREEN_STAGE_HEIGHT = 2160;

/**
 * The tile key on stage, or null for a plain grid.
 * @param {{view: string, pinned: string|null, screens: string[], dominant: string|null,
 *   self: string, tiles: string[]}} s screens: screen-tile keys, oldest first; tiles: every tile key
 */
export function stageTile({ view, pinned, screens = [], dominant, self, tiles }) {
  if (view === 'audio-only') return null;
  if (pinned && tiles.includes(pinned)) return pinned;
  const screen = [...screens].reverse().find((k) => tiles.includes(k));
  if (screen) return screen;
  if (view !== 'stage') return null;
  if (dominant && dominant !== self && tiles.includes(dominant)) return dominant;
  return tiles.find((k) => k !== self) ?? null;
}

/**
 * ReceiverVideoConstraints for a view: tiles sized to their pixels, the stage tile at high
 * resolution (a screen share at its full resolution), nothing at all in audio-only mode.
 * @param {{view: string, tiles: {source: string, height: number, screen?: boolean}[],
 *   stage: string|null, lastN?: number}} layout stage: the source on stage
 */
export function viewConstraints({ view, tiles, stage, lastN = -1 }) {
  if (view === 'audio-only') {
    return {
      colibriClass: ColibriClass.RECEIVER_VIDEO_CONSTRAINTS, lastN: 0, selectedSources: [], onStageSources: [],
      defaultConstraints: { maxHeight: 0 }, constraints: {},
    };
  }
  const constraints = {};
  const sorted = [...tiles].sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
  for (const t of sorted) {
    if (t.source && t.source !== stage) constraints[t.source] = { maxHeight: levelForHeight(t.height) };
  }
  // the stage wins over a tile with the same source name (someone sharing a screen without a
  // camera: the screen is their `-v0`, which their camera tile would also ask for)
  const onStage = sorted.filter((t) => t.source && t.source === stage);
  if (onStage.length) {
    constraints[stage] = { maxHeight: onStage.some((t) => t.screen) ? SCREEN_STAGE_HEIGHT : VIDEO_LEVELS.at(-1) };
  }
  return {
    colibriClass: ColibriClass.RECEIVER_VIDEO_CONSTRAINTS,
    lastN: Number.isInteger(lastN) && lastN >= -1 ? lastN : -1,
    selectedSources: [],
    onStageSources: stage && stage in constraints ? [stage] : [],
    defaultConstraints: { maxHeight: 180 },
    constraints,
  };
}
