// Screen sharing as Jitsi clients do it: the screen is the endpoint's second video source
// (`<endpoint>-v1`, videoType desktop), announced with Jingle source-add/source-remove through
// the focus and with a SourceVideoTypeMessage to the bridge. We answer the bridge's offer, so the
// page adds a receive-only m-line for it to the offer it builds (RemoteOffer.addLocalSlot): the
// browser answers it `sendonly` with the screen track. Pure: no DOM, no WebRTC objects.

import sdpTransform from 'sdp-transform';

import { ColibriClass } from './bridge-channel.js';

/** The m-line (mid) our screen is sent on. */
export const SCREEN_MID = 'screen';

/**
 * The source name of an endpoint's screen share: `<endpoint>-v<index>`, where the index counts the
 * video sources the endpoint already sends (lib-jitsi-meet names a new local track by the number of
 * local tracks of its kind): `-v1` beside a camera, `-v0` without one. The bridge numbers an
 * endpoint's video sources the same way, in the order they were signalled.
 */
export function screenSourceName(endpoint, index = 1) {
  return `${endpoint}-v${index}`;
}

/**
 * The index our screen share takes (see screenSourceName): the number of our camera m-lines
 * (`cameraMids`) that the answer `answerSdp` sends on with SSRCs. With no answer yet, `fallback`.
 */
export function screenSourceIndex(answerSdp, cameraMids, fallback = 1) {
  if (!answerSdp) return fallback;
  const mids = new Set(cameraMids.map(String));
  const sending = sdpTransform.parse(answerSdp).media.filter((m) => (
    mids.has(String(m.mid)) && m.type === 'video'
    && (m.direction === 'sendonly' || m.direction === 'sendrecv') && (m.ssrcs ?? []).length > 0
  ));
  return sending.length;
}

/** Whether a received track (from RemoteOffer) is a screen share rather than a camera. */
export function isScreenTrack(track) {
  if (!track || track.media !== 'video') return false;
  if (track.videoType) return track.videoType === 'desktop' || track.videoType === 'desktop_high_fps';
  return /-v[1-9]\d*$/.test(track.name ?? '');
}

/** The roster kind of a received track: 'audio', 'video' (camera) or 'screen'. */
export function trackKind(track) {
  return isScreenTrack(track) ? 'screen' : track.media;
}

/**
 * The Jingle contents announcing what the browser sends on `mid` (source-add / source-remove):
 * one `video` content with its SSRCs (named, owned, typed) and their FID group.
 */
export function localSourceContents(answerSdp, mid, { owner, name, videoType = 'desktop' }) {
  const parsed = sdpTransform.parse(answerSdp);
  const m = parsed.media.find((x) => String(x.mid) === mid);
  if (!m) return [];
  const ssrcs = [...new Set((m.ssrcs ?? []).map((s) => Number(s.id)))];
  if (!ssrcs.length) return [];
  const first = Array.isArray(m.msid) ? m.msid[0] : null;
  const mediaMsid = first ? `${first.id} ${first.appdata}` : undefined;
  const sources = ssrcs.map((ssrc) => {
    const msid = (m.ssrcs ?? []).find((s) => Number(s.id) === ssrc && s.attribute === 'msid')?.value ?? mediaMsid;
    return { ssrc, name, owner, videoType, ...(msid ? { msid } : {}) };
  });
  const ssrcGroups = (m.ssrcGroups ?? []).map((g) => ({ semantics: g.semantics, ssrcs: g.ssrcs.split(' ').map(Number) }));
  return [{ name: 'video', creator: 'initiator', senders: 'both', description: { media: 'video', payloadTypes: [], hdrExts: [], sources, ssrcGroups } }];
}

/** The bridge-channel message telling the bridge what a source of ours carries. */
export function sourceVideoType(sourceName, videoType) {
  return { colibriClass: ColibriClass.SOURCE_VIDEO_TYPE, sourceName, videoType };
}
