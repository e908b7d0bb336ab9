"""Audio for calls, without I/O: G.711 (ITU-T G.711 μ-law and A-law), 48 kHz ⇄ 8 kHz, the
mix of the meeting's voices, RTP headers for plain-RTP phones (RFC 3550, RFC 3551) and the SDP
offer/answer of a plain-RTP call (RFC 3264, RFC 4566).

Everything is numpy on 20 ms frames: a call costs a few table look-ups and sums per frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

RATE = 48_000
FRAME = 960  # 20 ms at 48 kHz
G711_RATE = 8_000
G711_FRAME = 160
PCMU, PCMA = 0, 8


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


ULAW_DECODE = _ulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()


def _encode_table(decode: np.ndarray) -> np.ndarray:
    """For every 16-bit sample (offset by 32768), the code whose decoded value is nearest."""
    order = np.argsort(decode, kind="stable")
    values = decode[order].astype(np.int32)
    samples = np.arange(-32768, 32768, dtype=np.int32)
    idx = np.clip(np.searchsorted(values, samples), 1, len(values) - 1)
    left, right = values[idx - 1], values[idx]
    nearest = np.where(samples - left <= right - samples, idx - 1, idx)
    return order[nearest].astype(np.uint8)


ULAW_ENCODE = _encode_table(ULAW_DECODE)
ALAW_ENCODE = _encode_table(ALAW_DECODE)


def g711_decode(payload: bytes, pt: int) -> np.ndarray:
    table = ULAW_DECODE if pt == PCMU else ALAW_DECODE
    return table[np.frombuffer(payload, dtype=np.uint8)]


def g711_encode(pcm: np.ndarray, pt: int) -> bytes:
    table = ULAW_ENCODE if pt == PCMU else ALAW_ENCODE
    return table[pcm.astype(np.int32) + 32768].tobytes()


def down_48k_to_8k(pcm: np.ndarray) -> np.ndarray:
    """Average every 6 samples (a box low-pass then decimation; plenty for telephone voice)."""
    n = len(pcm) // 6 * 6
    return pcm[:n].astype(np.int32).reshape(-1, 6).mean(axis=1).astype(np.int16)


def up_8k_to_48k(pcm: np.ndarray) -> np.ndarray:
    """Linear interpolation to 48 kHz."""
    if len(pcm) == 0:
        return pcm
    x = np.arange(len(pcm) * 6) / 6.0
    return np.interp(x, np.arange(len(pcm)), pcm.astype(np.float32)).astype(np.int16)


def prompt_frames(frequency: float, beeps: int, beep_ms: int = 250, gap_ms: int = 150,
                  level: int = 8000) -> list[np.ndarray]:
    """A generated announcement: ``beeps`` tones of ``frequency`` Hz, as 20 ms frames at 48 kHz."""
    beep = int(RATE * beep_ms / 1000)
    gap = int(RATE * gap_ms / 1000)
    t = np.arange(beep) / RATE
    tone = (np.sin(2 * np.pi * frequency * t) * level).astype(np.int16)
    pcm = np.concatenate([np.concatenate([tone, np.zeros(gap, np.int16)]) for _ in range(beeps)])
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME, np.int16)])
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


def to_mono(samples: np.ndarray, channels: int) -> np.ndarray:
    """aiortc's decoded frames are packed s16, interleaved when stereo."""
    flat = samples.reshape(-1)
    if channels == 2:
        return ((flat[0::2].astype(np.int32) + flat[1::2]) // 2).astype(np.int16)
    return flat.astype(np.int16)


# --------------------------------------------------------------------------------------- RTP


def rtp_packet(pt: int, seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF,
                       ssrc) + payload


@dataclass
class RtpIn:
    pt: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpIn | None:
    """An RTP packet's fields; None for anything else (RTCP, STUN, garbage)."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    pt = data[1] & 0x7F
    if 72 <= pt <= 79:  # RTCP (RFC 5761 §4)
        return None
    cc = data[0] & 0x0F
    offset = 12 + 4 * cc
    if data[0] & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data)
    if data[0] & 0x20:  # padding
        if end <= offset or data[-1] > end - offset:
            return None
        end -= data[-1]
    if offset > end:
        return None
    seq, ts, ssrc = struct.unpack("!HII", data[2:12])
    return RtpIn(pt, seq, ts, ssrc, data[offset:end])


# --------------------------------------------------------------------------------------- SDP


@dataclass
class PlainOffer:
    """What the gateway needs of a plain-RTP audio offer."""

    address: str
    port: int
    payload_types: list[int]
    telephone_event: int | None = None
    ptime: int = 20
    direction: str = "sendrecv"
    rtpmap: dict[int, str] = field(default_factory=dict)


def sdp_kind(sdp: str) -> str:
    """``webrtc`` (ICE + DTLS-SRTP, what browsers send), ``plain`` (RTP/AVP) or ``unsupported``."""
    audio = [line for line in sdp.splitlines() if line.startswith("m=audio ")]
    if not audio:
        return "unsupported"
    proto = audio[0].split()[2] if len(audio[0].split()) > 2 else ""
    if "SAVP" in proto and "a=fingerprint:" in sdp:
        return "webrtc"
    if proto == "RTP/AVP":
        return "plain"
    return "unsupported"


def parse_plain_offer(sdp: str) -> PlainOffer:
    """The first audio m-line: connection address, port, payload types; raises ``ValueError``."""
    session_addr = ""
    media_addr = ""
    in_audio = False
    offer: PlainOffer | None = None
    for raw in sdp.splitlines()[:200]:
        line = raw.strip()
        if line.startswith("m="):
            if offer is not None:
                break
            parts = line[2:].split()
            if parts and parts[0] == "audio":
                if len(parts) < 4 or not parts[1].isdigit():
                    raise ValueError("bad m=audio line")
                pts = [int(p) for p in parts[3:] if p.isdigit() and int(p) < 128][:32]
                offer = PlainOffer("", int(parts[1]), pts)
                in_audio = True
            continue
        if line.startswith("c="):
            bits = line[2:].split()
            if len(bits) == 3 and bits[0] == "IN" and bits[1] in ("IP4", "IP6"):
                if in_audio:
                    media_addr = bits[2].split("/")[0]
                elif offer is None:
                    session_addr = bits[2].split("/")[0]
        elif in_audio and offer is not None and line.startswith("a="):
            key, _, value = line[2:].partition(":")
            if key == "rtpmap":
                pt_text, _, enc = value.partition(" ")
                if pt_text.isdigit():
                    offer.rtpmap[int(pt_text)] = enc.lower()
                    if enc.lower().startswith("telephone-event/8000"):
                        offer.telephone_event = int(pt_text)
            elif key == "ptime" and value.strip().isdigit():
                offer.ptime = int(value)
            elif key in ("sendrecv", "sendonly", "recvonly", "inactive"):
                offer.direction = key
    if offer is None:
        raise ValueError("no audio m-line")
    offer.address = media_addr or session_addr
    if not offer.address or not 0 <= offer.port < 65536:
        raise ValueError("no connection address")
    return offer


def choose_g711(offer: PlainOffer) -> int | None:
    for pt in offer.payload_types:
        if pt in (PCMU, PCMA):
            return pt
        enc = offer.rtpmap.get(pt, "")
        if enc.startswith("pcmu/8000"):
            return PCMU
        if enc.startswith("pcma/8000"):
            return PCMA
    return None


def plain_answer(offer: PlainOffer, pt: int, address: str, port: int, session_id: int, version: int = 1) -> str:
    """An RFC 3264 answer: one audio stream, the chosen G.711 type (+ telephone-event if offered)."""
    pts = [pt] + ([offer.telephone_event] if offer.telephone_event is not None else [])
    name = "PCMU" if pt == PCMU else "PCMA"
    direction = {"sendonly": "recvonly", "recvonly": "sendonly"}.get(offer.direction, offer.direction)
    ip = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=parley {session_id} {version} IN {ip} {address}",
        "s=Parley",
        f"c=IN {ip} {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(p) for p in pts)}",
        f"a=rtpmap:{pt} {name}/8000",
    ]
    if offer.telephone_event is not None:
        lines += [f"a=rtpmap:{offer.telephone_event} telephone-event/8000",
                  f"a=fmtp:{offer.telephone_event} 0-15"]
    lines += ["a=ptime:20", f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"


def _audio_section(lines: list[str]) -> tuple[int, int]:
    """[start, end) of the first ``m=audio`` section of SDP lines; (-1, -1) without one."""
    start = next((i for i, line in enumerate(lines) if line.startswith("m=audio ")), -1)
    if start < 0:
        return -1, -1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    return start, end


def telephone_event_pt(sdp: str, clock: int = 48000) -> int | None:
    """The payload type of ``telephone-event/<clock>`` (RFC 4733) offered in the first audio
    m-line (a WebRTC caller's is at 48 kHz, Opus's clock), or None."""
    lines = sdp.splitlines()[:400]
    start, end = _audio_section(lines)
    if start < 0:
        return None
    formats = set(lines[start].split()[3:])
    for line in lines[start + 1 : end]:
        if line.startswith("a=rtpmap:"):
            pt_text, _, enc = line[len("a=rtpmap:") :].partition(" ")
            if (pt_text in formats and pt_text.isdigit() and 96 <= int(pt_text) <= 127
                    and enc.strip().lower() == f"telephone-event/{clock}"):
                return int(pt_text)
    return None


def with_telephone_event(answer: str, pt: int, clock: int = 48000) -> str:
    """``answer`` (an aiortc answer, which knows no telephone-event) accepting the offer's
    ``telephone-event/<clock>`` as ``pt`` on its audio m-line, events 0-15 (RFC 4733 §7.1.1)."""
    eol = "\r\n" if "\r\n" in answer else "\n"
    lines = answer.splitlines()
    start, end = _audio_section(lines)
    if start < 0 or str(pt) in lines[start].split()[3:]:
        return answer
    lines[start] = f"{lines[start]} {pt}"
    last_rtp = max((i for i in range(start + 1, end) if lines[i].startswith(("a=rtpmap:", "a=fmtp:",
                                                                             "a=rtcp-fb:"))), default=start)
    lines[last_rtp + 1 : last_rtp + 1] = [f"a=rtpmap:{pt} telephone-event/{clock}", f"a=fmtp:{pt} 0-15"]
    return eol.join(lines) + eol
