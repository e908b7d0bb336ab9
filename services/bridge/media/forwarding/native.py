"""The per-receiver loop of RTP forwarding in C (``native_fanout.c``), and the state it reads.

Forwarding one packet to N receivers is, per receiver: rewrite the header, SRTP-protect, send,
record it in the sent log, count it. In Python that is ~20-28 µs per receiver on a 2-core VM
once the event loop's wake-ups have cooled the caches, of which libsrtp and ``sendto`` are
~17; the rest is the interpreter. ``native_fanout.c`` does the same loop in C, called once per
incoming packet with the list of subscriptions the policy selected; everything else (policy,
simulcast, NACKs, RTCP, retransmissions) stays in Python. The Python loop in
``ConferenceForwarder.handle_rtp`` remains the reference and the fallback: for payload rewrites
(VP8 picture ids after a simulcast switch), for a socket whose buffer is full, and whenever the
library is not built.

Build (gcc only, no Python headers): ``python -m services.bridge.media.forwarding.native``; ``./parley``
and the bridge image run it. The library is loaded with cffi's ABI mode and calls libsrtp
through the ``srtp_protect`` of pylibsrtp's own copy, whose sessions the bridge creates.

The structures and the function are declared once, in ``native_fanout.h``: the C file includes
it and cffi reads it here. State shared with C lives in cffi structures owned here: one ``parley_receiver`` per endpoint
(:class:`NativeReceiver`: SRTP session, address, socket) and one ``parley_subscription`` per
subscription (a mirror of its :class:`~.mapping.ForwardingMapping`, counters, and pointers into
the :class:`~.nack.SentLog` arrays).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cffi
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

if TYPE_CHECKING:
    from ..allocation.send_side_bwe import SendHistory
    from ..transport.aiortc_adapter import SrtpContext
    from .mapping import ForwardingMapping
    from .nack import SentLog
    from .streams import Subscription

log = logging.getLogger("parley.bridge.media.native")

SOURCE = Path(__file__).with_name("native_fanout.c")
LIBRARY = Path(__file__).with_name("native_fanout.so")

HEADER = Path(__file__).with_name("native_fanout.h")


def declarations(header: Path = HEADER) -> str:
    """The C declarations shared with ``native_fanout.c``, for cffi's ``cdef``: the header
    without its preprocessor lines (include guard, ``#include``), which cdef does not take."""
    return "\n".join(line for line in header.read_text().splitlines() if not line.lstrip().startswith("#"))


_ffi = cffi.FFI()
_ffi.cdef(declarations())
_NULL = _ffi.NULL


class NativeUnavailable(Exception):
    """The C loop cannot be used (not built, stale, or does not load); the message says why."""


def build(output: Path = LIBRARY) -> Path:
    """Compile ``native_fanout.c`` into ``output`` (atomically: a running bridge keeps the old
    file). Raises :class:`NativeUnavailable` without a C compiler or when it fails."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise NativeUnavailable("no C compiler (install gcc)")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".native_fanout-", suffix=".so", dir=output.parent)
    os.close(fd)
    command = [
        compiler,
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-shared",
        "-fPIC",
        "-o",
        temporary,
        str(SOURCE),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(temporary)
        raise NativeUnavailable(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
    os.chmod(temporary, 0o755)  # mkstemp's 0600 would keep it from an unprivileged bridge
    os.replace(temporary, output)
    return output


def load(path: Path = LIBRARY) -> Any:
    """The built library, checked to be newer than its source."""
    if not path.exists():
        raise NativeUnavailable(f"{path} is not built (python -m services.bridge.media.forwarding.native)")
    if path == LIBRARY:
        for source in (SOURCE, HEADER):
            if source.exists() and source.stat().st_mtime > path.stat().st_mtime:
                raise NativeUnavailable(
                    f"{path} is older than {source.name} (python -m services.bridge.media.forwarding.native)"
                )
    try:
        return _ffi.dlopen(str(path))
    except OSError as exc:
        raise NativeUnavailable(f"{path} does not load: {exc}") from exc


def socket_address(address: tuple[Any, ...]) -> bytes:
    """The ``struct sockaddr_in`` (a 2-tuple) or ``sockaddr_in6`` (a 4-tuple, as the socket
    module reports IPv6 peers) for ``address``, in Linux's layout."""
    if len(address) == 2:
        host, port = address
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)
    host, port, flowinfo, scope_id = address
    return (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!HI", port, flowinfo)
        + socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        + struct.pack("=I", scope_id)
    )


class NativeReceiver:
    """One endpoint as the C loop sees it: where to send and with which SRTP session. Holds the
    :class:`SrtpContext` whose session the structure points to, so it cannot be freed first."""

    __slots__ = ("_history", "_srtp", "struct")

    def __init__(self, fd: int) -> None:
        self.struct = _ffi.new("struct parley_receiver *")
        self.struct.fd = fd
        self._srtp: SrtpContext | None = None
        self._history: SendHistory | None = None

    def set_send_history(self, history: SendHistory | None) -> None:
        """Number what the C loop sends it into ``history`` (``None``: do not number); the
        arrays stay alive with it here."""
        struct = self.struct
        if history is None:
            struct.twcc_state = _NULL
        else:
            struct.twcc_seqs = _ffi.cast("int64_t *", _ffi.from_buffer(history.seqs))
            struct.twcc_sent_us = _ffi.cast("int64_t *", _ffi.from_buffer(history.sent_us))
            struct.twcc_sizes = _ffi.cast("int64_t *", _ffi.from_buffer(history.sizes))
            struct.twcc_mask = history.mask
            struct.twcc_state = _ffi.cast("int64_t *", _ffi.from_buffer(history.state))
        self._history = history

    def set_srtp(self, srtp: SrtpContext | None) -> None:
        self.struct.srtp = _NULL if srtp is None else _ffi.cast("void *", srtp.tx_session)
        self._srtp = srtp

    def set_address(self, address: tuple[Any, ...] | None, fd: int | None = None) -> None:
        """Send to ``address`` from socket ``fd`` (``None``: keep the socket)."""
        if fd is not None:
            self.struct.fd = fd
        if address is None:
            self.struct.address_length = 0
            return
        encoded = socket_address(address)
        self.struct.address_length = 0
        self.struct.address[0 : len(encoded)] = encoded
        self.struct.address_length = len(encoded)

    @property
    def ready(self) -> bool:
        """Whether the C loop can send to it (it has an SRTP session and an address)."""
        return self.struct.srtp != _NULL and self.struct.address_length > 0

    @property
    def send_errors(self) -> int:
        return int(self.struct.send_errors)


def subscription_struct(receiver: NativeReceiver, sent: SentLog) -> Any:
    """A ``parley_subscription`` for a new subscription to ``receiver`` recording into ``sent``
    (identity mapping, no packets yet). The sent log's arrays outlive it: the subscription
    holds both."""
    sub = _ffi.new("struct parley_subscription *")
    sub.receiver = receiver.struct
    sub.sent = _ffi.cast("int64_t *", _ffi.from_buffer(sent.entries))
    sub.resent = _ffi.cast("double *", _ffi.from_buffer(sent.resent_at))
    sub.sent_mask = len(sent.entries) - 1
    return sub


def write_mapping(sub: Any, mapping: ForwardingMapping) -> None:
    """Mirror ``mapping`` into the ``parley_subscription`` ``sub`` (only ``Subscription`` calls
    this, whenever its mapping changes: the C copy is never written anywhere else)."""
    sub.out_ssrc = mapping.out_ssrc & 0xFFFFFFFF
    sub.seq_delta = mapping.seq_delta & 0xFFFF
    sub.ts_delta = mapping.ts_delta & 0xFFFFFFFF
    sub.rewrite = mapping.rewrite
    sub.python_only = mapping.payload_rewrite is not None


class NativeFanout:
    """The C loop bound to the bridge's UDP socket. ``fd``: the socket's descriptor;
    ``queued``: the event loop transport's ``get_write_buffer_size`` (while it holds datagrams
    the C loop steps aside, so nothing overtakes them)."""

    def __init__(self, fd: int, queued: Callable[[], int], library: Any = None) -> None:
        self.fd = fd
        self._lib = library if library is not None else load()
        self._fanout = self._lib.parley_fanout
        address = int(_srtp_ffi.cast("uintptr_t", _srtp_ffi.addressof(_srtp_lib, "srtp_protect")))
        self._protect = _ffi.cast("parley_protect_fn", address)
        self._queued = queued
        self._flags = _ffi.new("unsigned char[]", 64)
        self._new = _ffi.new
        self.packets_to_python = 0
        """Subscriptions the C loop left to Python (payload rewrites, full socket buffer...)."""

    def receiver(self) -> NativeReceiver:
        return NativeReceiver(self.fd)

    def targets(self, subscriptions: Sequence[Subscription]) -> Any:
        """The C array of ``subscriptions``' structures, for :meth:`forward`: valid as long as
        that sequence is neither changed nor freed (a subscription's structure is its own for
        life)."""
        return self._new("struct parley_subscription *[]", [sub.native for sub in subscriptions])

    def forward(
        self,
        packet: bytes,
        subscriptions: Sequence[Subscription],
        twcc_offset: int = -1,
        targets: Any = None,
    ) -> Sequence[Subscription]:
        """Send ``packet`` to every subscription the C loop can serve; return the rest (usually
        none) for the Python loop. ``twcc_offset``: where each numbered receiver's transport-wide
        sequence number goes (-1: nowhere). ``targets``: :meth:`targets` of ``subscriptions``
        when the caller keeps it (None: made here)."""
        if self._queued():
            return subscriptions
        n = len(subscriptions)
        flags = self._flags
        if n > len(flags):
            flags = self._flags = _ffi.new("unsigned char[]", 2 * n)
        if targets is None:
            targets = self._new("struct parley_subscription *[]", [sub.native for sub in subscriptions])
        if type(packet) is not bytes:
            packet = bytes(packet)
        if not self._fanout(self._protect, packet, len(packet), targets, n, flags, twcc_offset):
            return ()
        rest = [sub for sub, flag in zip(subscriptions, flags[0:n], strict=True) if flag]
        self.packets_to_python += len(rest)
        return rest


def main() -> None:
    try:
        path = build()
        load(path)
    except NativeUnavailable as exc:
        print(f"native forwarding loop not built: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"built {path}")


if __name__ == "__main__":
    main()
