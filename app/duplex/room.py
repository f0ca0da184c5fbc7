"""A simulated room: what the microphone hears when the replica speaks through a speaker.

Used by the tests and the bench to make echo reproducibly, and to drive a
``MicFilter`` and the real VAD faster than real time. The speaker and the
microphone share one clock, exactly as ``PlayoutBuffer.taps`` and the mic's
``t_ns`` do in the app; ``stamp_error_ms`` mimics a device that misreports
its latency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from app.core.audio import resample
from app.core.audio_io import BLOCK, SOURCE_RATE, FileSource, FramesCallback, SourceItem
from app.core.listener import Listener
from app.core.vad import TurnDetectorSettings
from app.duplex.playout import PlayoutHistory

Tap = Callable[[np.ndarray, int], None]


@dataclass(frozen=True)
class Room:
    """Speaker-to-mic path: a delay, a direct sound, early reflections and a decaying tail."""

    delay_ms: float = 60.0  # speaker latency not covered by timestamps + air
    rt60_ms: float = 300.0  # time for the reverb to decay by 60 dB
    gain: float = 0.5  # amplitude of the direct sound at the mic (speaker volume x coupling)
    noise_rms: float = 0.002  # mic self-noise and room tone
    seed: int = 0

    def impulse_response(self, rate: int = SOURCE_RATE) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        n = int(rate * self.rt60_ms / 1000)
        t = np.arange(n) / rate
        tail = rng.standard_normal(n) * np.exp(-6.9 * t / (self.rt60_ms / 1000)) * 0.25
        tail[: int(0.004 * rate)] = 0.0  # the first reflection comes a few ms after the direct sound
        ir = tail
        ir[0] = 1.0
        for delay_s, amp in ((0.007, 0.5), (0.013, -0.35), (0.021, 0.25)):
            ir[int(delay_s * rate)] += amp
        delay = int(self.delay_ms * rate / 1000)
        return np.concatenate([np.zeros(delay), ir * self.gain]).astype(np.float32)

    def echo(self, played16k: np.ndarray) -> np.ndarray:
        """The replica's voice as the mic picks it up (same length as ``played16k``)."""
        played16k = np.asarray(played16k, dtype=np.float32)
        ir = self.impulse_response(SOURCE_RATE)
        size = _fft_size(len(played16k) + len(ir))
        out = np.fft.irfft(np.fft.rfft(played16k, size) * np.fft.rfft(ir, size), size)
        return out[: len(played16k)].astype(np.float32)

    def noise(self, n: int) -> np.ndarray:
        return (np.random.default_rng(self.seed + 1).standard_normal(n) * self.noise_rms).astype(np.float32)


def _fft_size(n: int) -> int:
    return 1 << int(np.ceil(np.log2(max(n, 1))))


@dataclass
class Recording:
    """One simulated exchange, with every signal kept for measurements."""

    played: np.ndarray  # at the sink rate
    echo: np.ndarray  # 16 kHz, what the room adds to the mic
    near: np.ndarray  # 16 kHz, the user's voice at the mic
    mic: np.ndarray  # 16 kHz, echo + near + noise
    t0_ns: int


def record(
    played: np.ndarray,
    sink_rate: int,
    room: Room,
    near: list[tuple[float, np.ndarray]] | None = None,
    *,
    echo: bool = True,
    tail_s: float = 1.0,
    t0_ns: int = 10_000_000_000,
) -> Recording:
    """Mix the replica's playout (through ``room``) with the user's utterances at given offsets (s)."""
    played = np.asarray(played, dtype=np.float32)
    n = int((len(played) / sink_rate + tail_s) * SOURCE_RATE)
    n -= n % BLOCK
    played16k = np.zeros(n, dtype=np.float32)
    p = resample(played, sink_rate, SOURCE_RATE)[:n]
    played16k[: len(p)] = p
    echo_sig = room.echo(played16k) if echo else np.zeros(n, dtype=np.float32)
    near_sig = np.zeros(n, dtype=np.float32)
    for offset_s, audio in near or []:
        start = int(offset_s * SOURCE_RATE)
        take = max(0, min(len(audio), n - start))
        near_sig[start : start + take] += audio[:take]
    mic = echo_sig + near_sig + room.noise(n)
    return Recording(played, echo_sig, near_sig, mic.astype(np.float32), t0_ns)


def drive(
    rec: Recording,
    sink_rate: int,
    taps: list[Tap],
    *,
    stamp_error_ms: float = 0.0,
    sink_block: int = 512,
    speaker_lead_ms: float = 0.0,
) -> Iterator[tuple[np.ndarray, int]]:
    """Mic frames with capture times, after feeding ``taps`` the playout heard up to then.

    The speaker pulls ``speaker_lead_ms`` ahead of the mic (a device buffer);
    with 0 it pulls only what has been heard by the end of each mic frame,
    the hardest case for a canceller waiting for its reference.
    """
    played = np.concatenate([rec.played, np.zeros(int(len(rec.mic) * sink_rate / SOURCE_RATE) + sink_block)])
    pulled = 0
    frame_ns = int(BLOCK * 1e9 / SOURCE_RATE)
    for i in range(0, len(rec.mic) - BLOCK + 1, BLOCK):
        t_ns = rec.t0_ns + int(i * 1e9 / SOURCE_RATE)
        heard_until = t_ns + frame_ns + int(speaker_lead_ms * 1e6)
        while rec.t0_ns + int((pulled + sink_block) * 1e9 / sink_rate) <= heard_until:
            block = played[pulled : pulled + sink_block]
            heard_at = rec.t0_ns + int(pulled * 1e9 / sink_rate)
            for tap in taps:
                tap(block, heard_at)
            pulled += sink_block
        yield rec.mic[i : i + BLOCK], t_ns + int(stamp_error_ms * 1e6)


def erle_db(mic: np.ndarray, cleaned: np.ndarray) -> float:
    """Echo return loss enhancement: how much quieter the echo-only signal got, in dB."""
    p_in = float(np.mean(np.asarray(mic, dtype=np.float64) ** 2))
    p_out = float(np.mean(np.asarray(cleaned, dtype=np.float64) ** 2))
    return 10.0 * np.log10(p_in / max(p_out, 1e-20))


def vad_onsets(
    frames: Iterable[tuple[np.ndarray, int]],
    settings: TurnDetectorSettings | None = None,
    early: list[int] | None = None,
) -> list[int]:
    """Speech onsets (ns) the real Silero VAD and turn detector find in a stream of mic frames.

    With ``early`` (and ``settings.early_speech_ms``), the early-voice instants, where a
    talking replica would be muted, are appended to it.
    """
    onsets: list[int] = []
    listener = Listener(
        settings or TurnDetectorSettings(),
        onsets.append,
        _ignore,
        _ignore,
        _ignore,
        on_early_onset=early.append if early is not None else None,
    )
    for frame, t_ns in frames:
        listener.push(frame, t_ns)
    return onsets


def _ignore(*_args: object) -> None:
    return None


class RoomMic:
    """A live ``AudioSource``: scripted user speech plus the echo of whatever the sink plays.

    Wraps a ``FileSource`` (real-time pacing, ``wait_for`` conditions, true
    voice spans) and adds, to each mic frame, the room's response to the
    playout heard up to that frame; attach ``tap`` to ``sink.buffer.taps``.
    This is how a whole ``Conversation`` is tested against its own echo.
    """

    name = "room-mic"

    def __init__(self, room: Room, sink_rate: int, items: list[SourceItem], lead_in_s: float = 0.3) -> None:
        self.room = room
        self.user = FileSource(items, lead_in_s)
        self._played = PlayoutHistory(sink_rate)
        self._ir = room.impulse_response(SOURCE_RATE)
        self._rng = np.random.default_rng(room.seed + 2)

    @property
    def finished(self) -> threading.Event:
        return self.user.finished

    @property
    def voice_spans_ns(self) -> list[tuple[int, int]]:
        return self.user.voice_spans_ns

    def tap(self, block: np.ndarray, heard_at_ns: int) -> None:
        self._played.tap(block, heard_at_ns)

    def start(self, on_frames: FramesCallback) -> None:
        self.user.start(lambda frame, t_ns: on_frames(self._mix(frame, t_ns), t_ns))

    def stop(self) -> None:
        self.user.stop()

    def _mix(self, frame: np.ndarray, t_ns: int) -> np.ndarray:
        span = len(self._ir) - 1
        played, _ = self._played.read(t_ns - int(span * 1e9 / SOURCE_RATE), len(frame) + span)
        size = _fft_size(len(played) + len(self._ir))
        echo = np.fft.irfft(np.fft.rfft(played, size) * np.fft.rfft(self._ir, size), size)[span : span + len(frame)]
        noise = self._rng.standard_normal(len(frame)) * self.room.noise_rms
        return (frame + echo + noise).astype(np.float32)
