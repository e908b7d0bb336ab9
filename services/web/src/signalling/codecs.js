/**
 * Which codec we send: Chrome, answering, sends with the first codec of the *offer*'s m-line, so
 * the focus's offer (VP8 first, as Jicofo orders it) is reordered on our own sending m-lines before
 * it is applied, as lib-jitsi-meet does (`mungeCodecOrder`). The codec's RTX (`apt`) follows it.
 */
import sdpTransform from 'sdp-transform';

/**
 * `sdp` with `codec` (an rtpmap name: 'VP9', 'H264', 'red') first on the m-lines whose mid is
 * in `mids`; unchanged where that m-line does not offer it.
 */
export function preferCodec(sdp, mids, codec) {
  const session = sdpTransform.parse(sdp);
  const name = codec.toLowerCase();
  for (const m of session.media) {
    if (!mids.includes(String(m.mid))) continue;
    const preferred = (m.rtp ?? []).filter((r) => r.codec.toLowerCase() === name).map((r) => r.payload);
    if (!preferred.length) continue;
    const rtx = (m.fmtp ?? [])
      .filter((f) => preferred.some((p) => new RegExp(`(^|;)\\s*apt=${p}(;|$)`).test(f.config)))
      .map((f) => f.payload);
    const first = [...preferred, ...rtx];
    const order = String(m.payloads).split(' ').map(Number);
    m.payloads = [...first, ...order.filter((p) => !first.includes(p))].join(' ');
  }
  return sdpTransform.write(session);
}
