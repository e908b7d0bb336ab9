// Connection quality hint from WebRTC statistics: pure, so it is tested without a browser.

/**
 * Summarize the stats the page collects into a level.
 * @param {{rttMs?: number, lossRatio?: number, downlinkBps?: number, connected: boolean}} s
 * @returns {'good'|'fair'|'poor'|'unknown'}
 */
export function qualityLevel({ rttMs, lossRatio, downlinkBps, connected }) {
  if (!connected) return 'poor';
  if (rttMs === undefined && lossRatio === undefined && downlinkBps === undefined) return 'unknown';
  // The bridge's downlink estimate follows what is actually sent (it ramps up with the senders),
  // so only a very low estimate counts against the connection.
  let score = 2;
  if ((rttMs ?? 0) > 400 || (lossRatio ?? 0) > 0.08 || (downlinkBps !== undefined && downlinkBps < 64_000)) score = 0;
  else if ((rttMs ?? 0) > 150 || (lossRatio ?? 0) > 0.02 || (downlinkBps !== undefined && downlinkBps < 150_000)) score = 1;
  return ['poor', 'fair', 'good'][score];
}

/**
 * Extract rtt and loss from an RTCStatsReport-like iterable of stats objects; `previous` is the
 * last sample's counters so loss is measured over the interval.
 */
export function summarizeStats(reports, previous = { lost: 0, received: 0 }) {
  let rttMs;
  let lost = 0;
  let received = 0;
  let framesDecoded = 0;
  for (const r of reports) {
    if (r.type === 'candidate-pair' && r.nominated && r.currentRoundTripTime !== undefined) {
      rttMs = r.currentRoundTripTime * 1000;
    }
    if (r.type === 'inbound-rtp') {
      lost += r.packetsLost ?? 0;
      received += r.packetsReceived ?? 0;
      if (r.kind === 'video') framesDecoded += r.framesDecoded ?? 0;
    }
  }
  const dLost = Math.max(0, lost - previous.lost);
  const dReceived = Math.max(0, received - previous.received);
  const lossRatio = dLost + dReceived > 0 ? dLost / (dLost + dReceived) : undefined;
  return { rttMs, lossRatio, counters: { lost, received }, framesDecoded };
}

/**
 * How our camera sender should encode for the bridge's SenderSourceConstraints: maxHeight 0 means
 * nobody receives it (pause the encoder), -1 no limit, otherwise scale down to at most that height.
 * @returns {{active: boolean, scaleResolutionDownBy: number}}
 */
export function encodingForConstraint(maxHeight, trackHeight) {
  if (maxHeight === 0) return { active: false, scaleResolutionDownBy: 1 };
  if (!(maxHeight > 0) || !(trackHeight > 0) || trackHeight <= maxHeight) return { active: true, scaleResolutionDownBy: 1 };
  return { active: true, scaleResolutionDownBy: trackHeight / maxHeight };
}
