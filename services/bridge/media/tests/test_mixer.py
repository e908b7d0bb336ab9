from __future__ import annotations

import struct
import threading

import numpy as np
import pytest

from services.bridge.media.allocation.mixer import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    MixedRtpStream,
    MixerThread,
    MixMinusMixer,
    OpusDecoder,
    OpusEncoder,
)

TONES = {"a": 440.0, "b": 660.0, "c": 880.0}
FRAMES = 30


def tone_frames(freq: float, frames: int, amplitude: int = 6000) -> list[np.ndarray]:
    t = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)
    return [pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(frames)]


def encoded_tones() -> dict[str, list[bytes]]:
    out = {}
    for ep, freq in TONES.items():
        encoder = OpusEncoder(bitrate=48_000)
        out[ep] = [encoder.encode(f) for f in tone_frames(freq, FRAMES)]
    return out


def energy_at(pcm: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    freqs = np.fft.rfftfreq(pcm.size, 1 / SAMPLE_RATE)
    band = (freqs > freq - 20) & (freqs < freq + 20)
    return float(spectrum[band].max())


def decode_all(payloads: list[bytes]) -> np.ndarray:
    decoder = OpusDecoder()
    return np.concatenate([decoder.decode(p) for p in payloads])


def test_mix_contains_the_others_and_not_the_receiver() -> None:
    mixer = MixMinusMixer()
    mixer.add_receiver("b")
    mixer.add_receiver("listener")  # a mixer channel that sends nothing
    streams = encoded_tones()
    outputs: dict[str, list[bytes]] = {"b": [], "listener": []}
    for i in range(FRAMES):
        for ep, frames in streams.items():
            mixer.push(ep, frames[i])
        for receiver, payload in mixer.mix():
            outputs[receiver].append(payload)
    assert mixer.frames_mixed == FRAMES and mixer.decode_errors == 0
    to_b = decode_all(outputs["b"])[-20 * FRAME_SAMPLES :]  # skip the codecs' start-up
    a, b, c = (energy_at(to_b, TONES[ep]) for ep in "abc")
    assert a > 50 * b and c > 50 * b  # the others' tones, not b's own
    to_listener = decode_all(outputs["listener"])[-20 * FRAME_SAMPLES :]
    levels = [energy_at(to_listener, TONES[ep]) for ep in "abc"]
    assert min(levels) > 0.3 * max(levels)  # everyone, at comparable strength


def test_missing_frames_are_silence_and_queues_are_bounded() -> None:
    mixer = MixMinusMixer(max_queue_frames=3)
    mixer.add_receiver("r")
    frames = encoded_tones()["a"]
    for payload in frames[:10]:
        mixer.push("a", payload)  # the sender runs ahead of the mixer: only the newest 3 stay
    assert len(mixer.mix()) == 1
    mixer.mix()
    mixer.mix()
    ((receiver, payload),) = mixer.mix()  # queue drained: the mix is silence, still a packet
    assert receiver == "r" and payload


def test_bad_payload_is_counted_not_fatal() -> None:
    mixer = MixMinusMixer()
    mixer.add_receiver("r")
    mixer.push("a", b"\xff")  # libopus rejects this TOC-only packet
    mixer.push("b", b"")
    good = encoded_tones()["c"][0]
    mixer.push("c", good)
    assert [r for r, _ in mixer.mix()] == ["r"]
    assert mixer.decode_errors == 2
    with pytest.raises(ValueError, match="undecodable"):
        OpusDecoder().decode(b"\xff")
    with pytest.raises(ValueError, match="empty"):
        OpusDecoder().decode(b"")


def test_removed_endpoint_no_longer_mixed_or_served() -> None:
    mixer = MixMinusMixer()
    mixer.add_receiver("a")
    mixer.add_receiver("b")
    mixer.remove_endpoint("a")
    assert mixer.receivers == ["b"]
    with pytest.raises(ValueError, match="max_queue_frames"):
        MixMinusMixer(max_queue_frames=0)


def test_mixed_rtp_stream_numbers_packets() -> None:
    stream = MixedRtpStream(ssrc=0xDEADBEEF, payload_type=111, seq=65535, timestamp=2**32 - 960)
    first = stream.packet(b"\x01")
    second = stream.packet(b"\x02")
    assert struct.unpack("!BBHII", first[:12]) == (0x80, 0x80 | 111, 65535, 2**32 - 960, 0xDEADBEEF)
    assert struct.unpack("!BBHII", second[:12]) == (0x80, 111, 0, 0, 0xDEADBEEF)
    assert first[12:] == b"\x01"


def test_mixer_thread_ticks_off_the_caller_thread() -> None:
    mixer = MixMinusMixer()
    mixer.add_receiver("r")
    ticks: list[str] = []
    done = threading.Event()

    def deliver(out: list[tuple[str, bytes]]) -> None:
        ticks.append(threading.current_thread().name)
        if len(ticks) >= 5:
            done.set()

    runner = MixerThread(mixer, deliver)
    runner.start()
    try:
        assert done.wait(5.0)
    finally:
        runner.stop()
    assert set(ticks) == {"parley-mixer"}
