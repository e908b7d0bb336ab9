"""RTCP termination: the bridge ends each endpoint's RTCP session and speaks its own. No I/O.

cf. jitsi-videobridge's RTCP termination and mediasoup's ``KeyFrameRequestManager``: from
receivers, receiver reports (loss and round trip per subscription), REMB (their estimate), PLI
and FIR (a key frame asked of the sender, at most one per ``KEYFRAME_REQUEST_INTERVAL``) and
NACKs (handed to the :class:`~.nack.Retransmitter`), transport-cc feedback (the send-side
estimate's, ``allocation/send_side_bwe.py``; never forwarded); from senders, sender reports, relayed to
each receiver rewritten to what it sees (RFC 3550 6.4.1). Towards senders, periodic receiver
reports and REMB (:meth:`RtcpTerminator.send_reports`), and transport-cc feedback on what they send
(:meth:`RtcpTerminator.send_transport_feedback`).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from ..packets import rtcp, twcc
from ..transport.aiortc_adapter import SrtpError
from .nack import Retransmitter
from .streams import EndpointMedia, IncomingStream

KEYFRAME_REQUEST_INTERVAL = 0.3  # seconds between PLIs the bridge sends for one stream
RTT_SMOOTHING = 0.2  # weight of a new round-trip sample


def request_keyframe(stream: IncomingStream, now: float) -> None:
    """PLI to the stream's sender, at most one per ``KEYFRAME_REQUEST_INTERVAL`` (the stream
    keeps when it last asked): for a receiver's PLI or FIR, and the conference's policy
    (:data:`~.policy.RequestKeyframe`)."""
    if now - stream.last_keyframe_request < KEYFRAME_REQUEST_INTERVAL or not stream.sender.connected:
        return
    stream.last_keyframe_request = now
    stream.sender.plis_forwarded += 1
    stream.sender.send_rtcp(rtcp.build_pli(stream.sender.rtcp_ssrc, stream.ssrc))


class RtcpTerminator:
    """One conference's RTCP: ``endpoints`` is the forwarder's (read, never changed here)."""

    def __init__(
        self,
        endpoints: Mapping[str, EndpointMedia],
        retransmitter: Retransmitter,
        remb_min_bps: int,
        remb_max_bps: int,
    ) -> None:
        self.endpoints = endpoints
        self.retransmitter = retransmitter
        self.remb_min_bps = remb_min_bps
        self.remb_max_bps = remb_max_bps

    def handle_rtcp(self, endpoint: EndpointMedia, compound: bytes, now: float) -> None:
        """A decrypted RTCP compound packet from ``endpoint``; malformed input is dropped whole."""
        try:
            packets = list(rtcp.iter_packets(compound))
        except rtcp.RtcpError:
            return
        for ptype, fmt, packet in packets:
            try:
                if ptype == rtcp.SR:
                    self._on_sender_report(endpoint, packet, fmt, now)
                elif ptype == rtcp.RR:
                    self._on_report_blocks(endpoint, rtcp.parse_report_blocks(packet, fmt, 8), now)
                elif ptype == rtcp.RTPFB and fmt == rtcp.FMT_NACK:
                    self.retransmitter.on_nack(endpoint, packet, now)
                elif ptype == rtcp.RTPFB and fmt == twcc.FMT_TRANSPORT_CC:
                    # about the bridge's own numbering of what it sends: terminated here
                    estimator = endpoint.send_side
                    if estimator is not None:
                        endpoint.transport_cc_feedback_received += 1
                        estimator.on_feedback(twcc.parse_feedback(packet), now)
                elif ptype == rtcp.PSFB and fmt == rtcp.FMT_PLI:
                    sub = endpoint.subscriptions_by_out_ssrc.get(rtcp.feedback_ssrcs(packet)[1])
                    if sub is not None:
                        request_keyframe(sub.stream, now)
                elif ptype == rtcp.PSFB and fmt == rtcp.FMT_FIR:
                    for ssrc in rtcp.parse_fir_ssrcs(packet):
                        sub = endpoint.subscriptions_by_out_ssrc.get(ssrc)
                        if sub is not None:
                            request_keyframe(sub.stream, now)
                elif ptype == rtcp.PSFB and fmt == rtcp.FMT_REMB:
                    remb = rtcp.parse_remb(packet)
                    if remb is not None:
                        endpoint.remb_bps = remb[0]
                        if endpoint.send_side is not None:  # its start, before any feedback
                            endpoint.send_side.seed(remb[0])
                        for ssrc in remb[1]:
                            sub = endpoint.subscriptions_by_out_ssrc.get(ssrc)
                            if sub is not None:
                                sub.remb_bps = remb[0]
            except (rtcp.RtcpError, struct.error):
                continue

    def _on_sender_report(self, endpoint: EndpointMedia, packet: bytes, count: int, now: float) -> None:
        report = rtcp.parse_sr(packet)
        self._on_report_blocks(endpoint, rtcp.parse_report_blocks(packet, count, 28), now)
        stream = endpoint.streams.get(report.ssrc)
        if stream is None or stream.media is not None:
            return
        stream.last_sr = report
        stream.reception.sender_report(report.ntp, now)
        middle = (report.ntp >> 16) & 0xFFFFFFFF
        for sub in stream.subscriptions:
            mapping = sub.mapping
            reports = sub.reports_sent
            if len(reports) >= 8:
                del reports[next(iter(reports))]
            reports[middle] = now
            sub.receiver.send_rtcp(
                rtcp.build_sr(
                    rtcp.SenderReport(
                        mapping.out_ssrc, report.ntp, report.rtp_timestamp + mapping.ts_delta, sub.packets, sub.octets
                    )
                )
            )

    def _on_report_blocks(self, endpoint: EndpointMedia, blocks: list[rtcp.ReportBlock], now: float) -> None:
        video_lost = -1
        for block in blocks:
            sub = endpoint.subscriptions_by_out_ssrc.get(block.ssrc)
            if sub is not None:
                sub.fraction_lost = block.fraction_lost
                if sub.stream.kind == "video":
                    video_lost = max(video_lost, block.fraction_lost)
                sent_at = sub.reports_sent.get(block.lsr) if block.lsr else None
                if sent_at is not None:
                    # RFC 3550 6.4.1: round trip = arrival - LSR - DLSR, here measured from when
                    # the bridge relayed that SR (the receiver's own queueing counts, as it should)
                    rtt = now - sent_at - block.dlsr / 65536
                    if rtt >= 0:
                        old = endpoint.rtt
                        endpoint.rtt = rtt if old is None else old + RTT_SMOOTHING * (rtt - old)
        if video_lost >= 0:
            endpoint.video_fraction_lost = video_lost
            endpoint.video_loss_reports += 1

    def send_transport_feedback(self, endpoint: EndpointMedia, media_ssrc: int, now: float) -> None:
        """Transport-cc feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01) to
        ``endpoint`` for what arrived from it since the last."""
        generator = endpoint.transport_cc
        if generator is None:
            return
        for packet in generator.feedback(endpoint.rtcp_ssrc, media_ssrc, now):
            try:
                endpoint.send_rtcp(packet)
            except SrtpError:
                return

    def send_reports(self, now: float) -> None:
        """Periodic RTCP to each sender: receiver reports for what it sends us, and REMB with the
        lowest estimate its receivers reported (bounded by the configured range). A simulcast
        sender is not held to its slowest receiver (each receiver gets the layer its own estimate
        allows): it gets the upper bound, and its own loss-based control still applies."""
        for endpoint in self.endpoints.values():
            if not endpoint.connected:
                continue
            media = [s for s in endpoint.streams.values() if s.media is None and s.reception.received]
            if not media:
                continue
            packet = rtcp.build_rr(endpoint.rtcp_ssrc, [s.reception.report_block(now) for s in media])
            video = [s for s in media if s.kind == "video"]
            if video:
                estimates = [sub.remb_bps for s in video for sub in s.subscriptions if sub.remb_bps]
                simulcast = any(semantics == "SIM" for semantics, _ in endpoint.sources.ssrc_groups)
                bitrate = min(estimates) if estimates and not simulcast else self.remb_max_bps
                bitrate = max(self.remb_min_bps, min(self.remb_max_bps, bitrate))
                packet += rtcp.build_remb(endpoint.rtcp_ssrc, bitrate, [s.ssrc for s in video])
            try:
                endpoint.send_rtcp(packet)
            except SrtpError:
                continue
