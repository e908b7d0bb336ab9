// Recording and live streaming, Jibri's protocol (mirrors services/common/jibri.py): the
// `<jibri/>` IQ a participant sends to the focus in the room (`room@muc/focus`) to start or stop,
// and the `<jibri-recording-status/>` the focus puts in its presence, which every participant
// and every joiner sees. No I/O.

import { attr, child } from './xml.js';

export const JIBRI_NS = 'http://jitsi.org/protocol/jibri';

/** The `<jibri action=…/>` payload: start ({mode: 'file'|'stream', streamId}) or stop ({sessionId}). */
export function appendJibriRequest(builder, { action, mode, streamId, sessionId }) {
  const attrs = { xmlns: JIBRI_NS, action };
  if (mode) attrs.recording_mode = mode;
  if (streamId) attrs.streamid = streamId;
  if (sessionId) attrs.session_id = sessionId;
  builder.c('jibri', attrs).up();
  return builder;
}

/** The focus's answer: {status, sessionId, mode}. */
export function parseJibriResult(iq) {
  const el = child(iq, 'jibri', JIBRI_NS);
  return { status: attr(el, 'status'), sessionId: attr(el, 'session_id'), mode: attr(el, 'recording_mode') };
}

/**
 * The recording status in a focus presence, or null when it has none:
 * {status: 'on'|'off'|'pending', mode, sessionId, initiator, failureReason, on}.
 */
export function parseRecordingStatus(presence) {
  const el = child(presence, 'jibri-recording-status', JIBRI_NS);
  if (!el) return null;
  const status = attr(el, 'status', 'off');
  return {
    status,
    mode: attr(el, 'recording_mode', 'file'),
    sessionId: attr(el, 'session_id'),
    initiator: attr(el, 'initiator'),
    failureReason: attr(el, 'failure_reason'),
    on: status === 'on' || status === 'pending',
  };
}
