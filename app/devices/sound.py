"""Microphone and speaker through sounddevice (PortAudio), with their real timing."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from app.core.audio_io import BLOCK, SOURCE_RATE, FramesCallback, PlayoutBuffer, PlayoutListener, PlayTag
from app.core.events import now_ns

_log = logging.getLogger(__name__)


class DeviceError(RuntimeError):
    """An audio device is missing or failed; the message says which and what to do."""


def _start_with_retry(make_stream: Callable[[], object], attempts: int = 3) -> object:
    """Open and start a stream; PortAudio's start can time out on a busy machine, so try again."""
    for attempt in range(attempts):
        stream = make_stream()
        try:
            stream.start()  # type: ignore[attr-defined]
            return stream
        except Exception:
            stream.close(ignore_errors=True)  # type: ignore[attr-defined]
            if attempt == attempts - 1:
                raise
            _log.warning("audio stream did not start (attempt %d), retrying", attempt + 1)
    raise AssertionError("unreachable")


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        raise DeviceError(
            f"PortAudio is not available ({exc}). Install it (Debian/Ubuntu: sudo apt-get install libportaudio2); "
            "text chat works without it."
        ) from exc
    return sd


def list_devices(kind: str) -> list[tuple[int, str]]:
    """(index, name) of input ('input') or output ('output') devices; empty when none."""
    try:
        sd = _sounddevice()
        devices = sd.query_devices()
    except (DeviceError, Exception):
        return []
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    return [(i, d["name"]) for i, d in enumerate(devices) if d[key] > 0]


class MicrophoneSource:
    """16 kHz mono blocks of 32 ms from a PortAudio input device."""

    name = "microphone"

    def __init__(self, device: int | str | None = None, on_error: Callable[[str], None] | None = None) -> None:
        self.device = device
        self._stream = None
        self._on_error = on_error

    def start(self, on_frames: FramesCallback) -> None:
        sd = _sounddevice()

        def callback(indata: np.ndarray, frames: int, time_info, status) -> None:
            if status and self._on_error is not None and status.input_overflow:
                self._on_error("microphone overflow: audio was dropped")
            captured = now_ns() - int(max(0.0, time_info.currentTime - time_info.inputBufferAdcTime) * 1e9)
            on_frames(indata[:, 0].astype(np.float32, copy=True), captured)

        try:
            self._stream = _start_with_retry(
                lambda: sd.InputStream(
                    samplerate=SOURCE_RATE,
                    blocksize=BLOCK,
                    channels=1,
                    dtype="float32",
                    device=self.device,
                    callback=callback,
                    latency="low",
                    finished_callback=self._finished,
                )
            )
        except Exception as exc:
            raise DeviceError(
                f"Could not open the microphone ({exc}). Pick another one in the settings, or type instead."
            ) from exc

    def _finished(self) -> None:
        if self._on_error is not None and self._stream is not None and not self._stopping:
            self._on_error("The microphone stopped (unplugged?). Pick a microphone in the settings.")

    _stopping = False

    def stop(self) -> None:
        self._stopping = True
        if self._stream is not None:
            self._stream.close(ignore_errors=True)
            self._stream = None


class SpeakerSink:
    """Plays through PortAudio; the playout clock comes from the stream's DAC time."""

    name = "speaker"

    def __init__(self, sample_rate: int, device: int | str | None = None) -> None:
        self.sample_rate = sample_rate
        self.device = device
        self.buffer = PlayoutBuffer(sample_rate)
        self._stream = None

    def start(self, listener: PlayoutListener) -> None:
        sd = _sounddevice()
        self.buffer.listener = listener

        def callback(outdata: np.ndarray, frames: int, time_info, status) -> None:
            heard = now_ns() + int(max(0.0, time_info.outputBufferDacTime - time_info.currentTime) * 1e9)
            outdata[:, 0] = self.buffer.pull(frames, heard)

        try:
            self._stream = _start_with_retry(
                lambda: sd.OutputStream(
                    samplerate=self.sample_rate,
                    blocksize=BLOCK,
                    channels=1,
                    dtype="float32",
                    device=self.device,
                    callback=callback,
                    latency="low",
                )
            )
            self.buffer.latency_ns = int(self._stream.latency * 1e9)
        except Exception as exc:
            raise DeviceError(f"Could not open the speaker ({exc}). Pick another one in the settings.") from exc

    def play(self, audio: np.ndarray, tag: PlayTag) -> int:
        return self.buffer.push(audio, tag)

    def clear(self) -> int:
        return self.buffer.clear()

    def played_samples(self, tag: PlayTag) -> int:
        return self.buffer.played_samples(tag)

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.close(ignore_errors=True)
            self._stream = None


def open_speaker(sample_rate: int, device: int | str | None = None) -> SpeakerSink | None:
    """A speaker sink, or None (with a logged reason) when there is no output device."""
    if not list_devices("output"):
        _log.warning("no speaker found: replies will be shown, not heard")
        return None
    return SpeakerSink(sample_rate, device)
