"""Bridge channels over WebRTC data channels (the Colibri ``data`` content, RFC 8831/8832).

An endpoint with an ``sctpconnection`` (Colibri) gets an SCTP association on its own DTLS
association once DTLS is up (RFC 8261: SCTP packets are DTLS application data, carried by the
media engine). As jitsi-videobridge does, the bridge opens one reliable, ordered channel labelled
``default`` and also takes a channel the endpoint opens itself (the newest open one is used).
When a channel opens the bridge sends ``ServerHello``; every text message on it goes to
``on_frame`` like a WebSocket frame.

An association that fails or is aborted only loses the data channel: the endpoint's media and its
WebSocket are untouched, and messages to it fall back to the WebSocket (:mod:`.dispatch`).
A new DTLS association (the endpoint renegotiated its certificate) gets a new SCTP association.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.bridge.media.transport.aiortc_adapter import DataChannel, SctpAssociation
from services.common import bridge_channel as bc

log = logging.getLogger("bridge.datachannel")

LABEL = "default"
"""The label of the channel the bridge opens (jitsi-videobridge's)."""


class DtlsCarrier(Protocol):
    """What this module needs of the media engine."""

    def dtls_role(self, conference_id: str, endpoint_id: str) -> str | None: ...

    def send_dtls_data(self, conference_id: str, endpoint_id: str, data: bytes) -> None: ...


@dataclass
class _Endpoint:
    """One endpoint's SCTP side; the newest open channel carries what the bridge sends."""

    port: int
    association: SctpAssociation | None = None
    channels: list[DataChannel] = field(default_factory=list)  # open ones, oldest first
    opened: int = 0
    messages_in: int = 0
    messages_out: int = 0


class DataChannelTransport:
    name = "datachannel"

    def __init__(
        self,
        carrier: DtlsCarrier,
        *,
        on_frame: Callable[[str, str, str], None],
        on_open: Callable[[str, str], None] = lambda conference_id, endpoint_id: None,
        version: str,
    ) -> None:
        self.carrier = carrier
        self.on_frame = on_frame
        self.on_open = on_open
        self.version = version
        self._endpoints: dict[tuple[str, str], _Endpoint] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- control (Colibri, media engine) -------------------------------------------------------

    def set_sctp(self, conference_id: str, endpoint_id: str, port: int | None) -> None:
        """The endpoint's ``sctpconnection`` appeared (its SCTP port) or went (``None``)."""
        key = (conference_id, endpoint_id)
        if port is None:
            self._drop(key, transport_gone=False)
            return
        current = self._endpoints.get(key)
        if current is not None and current.port == port:
            return
        self._drop(key, transport_gone=False)  # a new port: a new association
        self._endpoints[key] = _Endpoint(port)
        if self.carrier.dtls_role(conference_id, endpoint_id) is not None:
            self.dtls_connected(conference_id, endpoint_id)

    def dtls_connected(self, conference_id: str, endpoint_id: str) -> None:
        """The endpoint's DTLS association is up (again): start a (new) SCTP association."""
        key = (conference_id, endpoint_id)
        ep = self._endpoints.get(key)
        role = self.carrier.dtls_role(conference_id, endpoint_id)
        if ep is None or role is None:
            return
        if ep.association is not None:
            self._close(ep.association, transport_gone=True)
        association = SctpAssociation(
            role,
            lambda data: self.carrier.send_dtls_data(conference_id, endpoint_id, data),
            port=ep.port,
            # a channel the endpoint opens is open on arrival (the ACK is already queued)
            on_channel=lambda channel: self._channel_open(key, association, channel),
        )
        ep.association, ep.channels = association, []
        own = association.open_channel(LABEL)
        own.on_open = lambda: self._channel_open(key, association, own)
        self._spawn(association.start(ep.port))
        log.info(
            "SCTP association started conference=%s endpoint=%s dtls=%s port=%d",
            conference_id,
            endpoint_id,
            role,
            ep.port,
        )

    def dtls_data(self, conference_id: str, endpoint_id: str, data: bytes) -> None:
        """An SCTP packet from the endpoint (DTLS application data)."""
        ep = self._endpoints.get((conference_id, endpoint_id))
        if ep is not None and ep.association is not None:
            ep.association.feed(data)

    def endpoint_expired(self, conference_id: str, endpoint_id: str) -> None:
        self._drop((conference_id, endpoint_id), transport_gone=True)

    async def stop(self) -> None:
        for key in list(self._endpoints):
            self._drop(key, transport_gone=False)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    # --- transport -----------------------------------------------------------------------------

    def send_text(self, conference_id: str, endpoint_id: str, text: str) -> bool:
        ep = self._endpoints.get((conference_id, endpoint_id))
        channel = self._channel(ep) if ep is not None else None
        if ep is None or channel is None:
            return False
        try:
            channel.send_text(text)
        except (ConnectionError, ValueError) as exc:
            log.info("data channel send to endpoint=%s failed: %s", endpoint_id, exc)
            return False
        ep.messages_out += 1
        return True

    def is_open(self, conference_id: str, endpoint_id: str) -> bool:
        ep = self._endpoints.get((conference_id, endpoint_id))
        return ep is not None and self._channel(ep) is not None

    def dump(self) -> list[dict[str, Any]]:
        return [
            {
                "conference": cid,
                "endpoint": eid,
                "port": ep.port,
                "association": ep.association.state if ep.association else None,
                "channel": channel.label if (channel := self._channel(ep)) else None,
                "channels_opened": ep.opened,
                "messages_in": ep.messages_in,
                "messages_out": ep.messages_out,
            }
            for (cid, eid), ep in self._endpoints.items()
        ]

    # --- internals -----------------------------------------------------------------------------

    @staticmethod
    def _channel(ep: _Endpoint) -> DataChannel | None:
        for channel in reversed(ep.channels):
            if channel.is_open:
                return channel
        return None

    def _channel_open(self, key: tuple[str, str], association: SctpAssociation, channel: DataChannel) -> None:
        ep = self._endpoints.get(key)
        if ep is None or ep.association is not association:
            return
        conference_id, endpoint_id = key
        ep.channels.append(channel)
        ep.opened += 1
        channel.on_message = lambda text: self._message(key, channel, text)
        channel.on_close = lambda: self._channel_closed(key, channel)
        log.info(
            "data channel open conference=%s endpoint=%s label=%s stream=%s",
            conference_id,
            endpoint_id,
            channel.label,
            channel.stream_id,
        )
        self.send_text(conference_id, endpoint_id, bc.serialize(bc.ServerHello(version=self.version)))
        try:
            self.on_open(conference_id, endpoint_id)
        except Exception:
            log.exception("data channel on_open failed")

    def _message(self, key: tuple[str, str], channel: DataChannel, text: str) -> None:
        ep = self._endpoints.get(key)
        if ep is None:
            return
        ep.messages_in += 1
        try:
            self.on_frame(key[0], key[1], text)
        except Exception:
            log.exception("bridge-channel message from endpoint=%s failed", key[1])

    def _channel_closed(self, key: tuple[str, str], channel: DataChannel) -> None:
        ep = self._endpoints.get(key)
        if ep is not None and channel in ep.channels:
            ep.channels.remove(channel)
            log.info("data channel closed conference=%s endpoint=%s", key[0], key[1])

    def _drop(self, key: tuple[str, str], *, transport_gone: bool) -> None:
        ep = self._endpoints.pop(key, None)
        if ep is not None and ep.association is not None:
            self._close(ep.association, transport_gone=transport_gone)
            ep.association, ep.channels = None, []

    def _close(self, association: SctpAssociation, *, transport_gone: bool) -> None:
        self._spawn(association.close(transport_gone=transport_gone))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(self._contained(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _contained(work: Any) -> None:
        try:
            await work
        except ConnectionError as exc:
            log.info("SCTP association: %s", exc)
        except Exception:
            log.exception("SCTP association failed")
