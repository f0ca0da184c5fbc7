"""Microphone and speaker through sounddevice (PortAudio), with their real timing."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from app.core.audio_io import (
    BLOCK,
    SOURCE_RATE,
    BlockConverter,
    BufferedSink,
    FramesCallback,
    PacedThread,
    PlayoutBuffer,
    PlayoutListener,
)
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
    """16 kHz mono blocks of 32 ms from a PortAudio input device.

    The device is asked for 16 kHz mono first; one that refuses (many USB and
    pro interfaces only do 44.1/48 kHz, some headsets 8 kHz) is opened at its
    own default rate and channels and converted (``BlockConverter``).
    ``capture`` forces a (rate, channels) format.
    """

    name = "microphone"

    def __init__(
        self,
        device: int | str | None = None,
        on_error: Callable[[str], None] | None = None,
        capture: tuple[int, int] | None = None,
    ) -> None:
        self.device = device
        self.capture = capture
        self.format: tuple[int, int] | None = None  # (rate, channels) actually opened
        self._stream = None
        self._on_error = on_error
        self._stopping = False

    def _formats(self, sd) -> list[tuple[int, int]]:
        if self.capture is not None:
            return [self.capture]
        formats = [(SOURCE_RATE, 1)]
        try:
            info = sd.query_devices(self.device, "input")
            native = (int(info["default_samplerate"]), max(1, min(2, int(info["max_input_channels"]))))
        except Exception:  # no such device: the first attempt says so
            return formats
        return formats if native == formats[0] else [*formats, native]

    def start(self, on_frames: FramesCallback) -> None:
        sd = _sounddevice()
        failure: Exception | None = None
        for rate, channels in self._formats(sd):
            converter = BlockConverter(rate, channels)

            def callback(indata: np.ndarray, frames: int, time_info, status, converter=converter) -> None:
                if status and self._on_error is not None and status.input_overflow:
                    self._on_error("microphone overflow: audio was dropped")
                captured = now_ns() - int(max(0.0, time_info.currentTime - time_info.inputBufferAdcTime) * 1e9)
                if converter.rate == SOURCE_RATE and converter.channels == 1 and frames == BLOCK:
                    on_frames(indata[:, 0].astype(np.float32, copy=True), captured)
                    return
                for block, t_ns in converter.push(indata, captured):
                    on_frames(block, t_ns)

            try:
                self._stream = _start_with_retry(
                    lambda rate=rate, channels=channels, callback=callback: sd.InputStream(
                        samplerate=rate,
                        blocksize=BLOCK if rate == SOURCE_RATE else 0,
                        channels=channels,
                        dtype="float32",
                        device=self.device,
                        callback=callback,
                        latency="low",
                        finished_callback=self._finished,
                    )
                )
            except Exception as exc:
                failure = exc
                _log.info("microphone refused %d Hz x %d: %s", rate, channels, exc)
                continue
            self.format = (rate, channels)
            return
        raise DeviceError(
            f"Could not open the microphone ({failure}). Pick another one in the settings, or type instead."
        ) from failure

    def _finished(self) -> None:
        if self._on_error is not None and self._stream is not None and not self._stopping:
            self._on_error("The microphone stopped (unplugged?). Pick a microphone in the settings.")

    def stop(self) -> None:
        self._stopping = True
        if self._stream is not None:
            self._stream.close(ignore_errors=True)
            self._stream = None


class SpeakerSink(BufferedSink):
    """Plays through PortAudio; the playout clock comes from the stream's DAC time.

    If the device goes away mid-stream (unplugged, sound server gone), a silent
    stand-in keeps pulling the queued audio at real-time pace, so turns still
    end and the conversation goes on as text; ``on_error`` hears about it once.
    """

    name = "speaker"

    def __init__(
        self, sample_rate: int, device: int | str | None = None, on_error: Callable[[str], None] | None = None
    ) -> None:
        self.sample_rate = sample_rate
        self.device = device
        self.on_error = on_error
        self.buffer = PlayoutBuffer(sample_rate)
        self.lost = False
        self._stream = None
        self._stopping = False
        self._stand_in: PacedThread | None = None

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
                    finished_callback=self._finished,
                )
            )
            self.buffer.latency_ns = int(self._stream.latency * 1e9)
        except Exception as exc:
            raise DeviceError(f"Could not open the speaker ({exc}). Pick another one in the settings.") from exc

    def _finished(self) -> None:
        """PortAudio ended the stream; unless we asked it to, the device is gone."""
        if self._stopping or self._stream is None or self.lost:
            return
        self.lost = True
        self.buffer.latency_ns = 0
        self._stand_in = PacedThread("audio-sink", self.sample_rate, BLOCK, self.buffer.pull)
        self._stand_in.start()
        message = "The speaker stopped (unplugged?): replies are shown, not heard. Pick a speaker in the settings."
        _log.warning("%s", message)
        if self.on_error is not None:
            self.on_error(message)

    def stop(self) -> None:
        self._stopping = True
        if self._stream is not None:
            self._stream.close(ignore_errors=True)
            self._stream = None
        if self._stand_in is not None:
            self._stand_in.stop()


def open_speaker(sample_rate: int, device: int | str | None = None) -> SpeakerSink | None:
    """A speaker sink, or None (with a logged reason) when there is no output device."""
    if not list_devices("output"):
        _log.warning("no speaker found: replies will be shown, not heard")
        return None
    return SpeakerSink(sample_rate, device)
