// Raised hands and reactions, carried as Jitsi Meet carries them so that Jitsi clients see ours
// and we see theirs:
// - a raised hand is the MUC presence extension <jitsi_participant_raisedHand> holding the time
//   it was raised (ms since the epoch); a lowered hand sends no such element (or 0/false);
// - a reaction is a bridge-channel EndpointMessage to everyone whose payload is
//   {name: 'endpoint-reaction', reactions: [...], timestamp}.
// Pure: parsing, validation, ordering.

import { endpointMessage } from './bridge-channel.js';

export const RAISED_HAND = 'jitsi_participant_raisedHand';
export const ENDPOINT_REACTION = 'endpoint-reaction';

/** Jitsi Meet's reactions and how the page draws them. */
export const REACTIONS = Object.freeze({
  like: '👍', clap: '👏', laugh: '😂', surprised: '😮', boo: '👎', silence: '🤫', love: '💖',
});

const MAX_REACTIONS_PER_MESSAGE = 5;

/** The raised-hand time from a presence's element text: a positive number, or null (lowered). */
export function parseRaisedHand(text) {
  if (text === undefined || text === null) return null;
  const value = String(text).trim();
  if (value === 'true') return 1; // older clients: raised, time unknown
  if (!/^\d{1,15}$/.test(value)) return null;
  const n = Number(value);
  return n > 0 ? n : null;
}

/** The EndpointMessage carrying reactions to everyone. */
export function reactionMessage(reactions, now = Date.now()) {
  return endpointMessage({ name: ENDPOINT_REACTION, reactions: [...reactions], timestamp: now });
}

/** Reactions in a received EndpointMessage: known names only, a few at most; null otherwise. */
export function reactionsFrom(msg) {
  const p = msg?.msgPayload;
  if (!p || p.name !== ENDPOINT_REACTION || !Array.isArray(p.reactions)) return null;
  const known = p.reactions.filter((r) => typeof r === 'string' && Object.hasOwn(REACTIONS, r)).slice(0, MAX_REACTIONS_PER_MESSAGE);
  return known.length ? { from: typeof msg.from === 'string' ? msg.from : '', reactions: known } : null;
}

/** Endpoints with a raised hand, earliest first (ties by endpoint id, so the order is stable). */
export function handQueue(people) {
  return [...people]
    .filter((p) => p.raisedHand)
    .sort((a, b) => a.raisedHand - b.raisedHand || (a.endpoint < b.endpoint ? -1 : a.endpoint > b.endpoint ? 1 : 0))
    .map((p) => p.endpoint);
}

/** Limits reactions a page shows per sender (a flood from one participant is dropped). */
export class ReactionLimiter {
  constructor({ perWindow = 10, windowMs = 5000 } = {}) {
    this.perWindow = perWindow;
    this.windowMs = windowMs;
    this.seen = new Map();
  }

  allow(from, now = Date.now()) {
    const times = (this.seen.get(from) ?? []).filter((t) => now - t < this.windowMs);
    if (times.length >= this.perWindow) {
      this.seen.set(from, times);
      return false;
    }
    times.push(now);
    this.seen.set(from, times);
    if (this.seen.size > 500) this.seen.delete(this.seen.keys().next().value);
    return true;
  }
}
