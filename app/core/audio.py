"""PCM helpers shared by every stage: resampling, and audio files in (any common format) and out (WAV).

Files are decoded with PyAV, the FFmpeg binding faster-whisper already depends
on (so the frozen app carries it too): WAV in any PCM or float encoding,
WAVE_FORMAT_EXTENSIBLE, FLAC, OGG (Vorbis/Opus), MP3 and whatever else FFmpeg
reads, at any rate and channel count.  Measured on 1.5 s questions: 1–3 ms per
file in-process, against 13–20 ms for a subprocess of imageio-ffmpeg's ffmpeg
(whose binary the packaged app leaves out).  Channels are averaged and the rate
changed with soxr, as everywhere else in Doppel.
"""

from __future__ import annotations

import shlex
import struct
import wave
from pathlib import Path

import numpy as np

# Formats named in messages; FFmpeg reads more (M4A/AAC, WebM, AIFF...), but these are the tested ones.
TESTED_FORMATS = "WAV (8/16/24/32-bit PCM or 32-bit float, extensible too), FLAC, OGG and MP3"
# A decoded stream this much shorter than its header promises is a cut-off file, not rounding
# (an MP3 without a length header has its duration estimated from the bitrate: a few % either way).
SHORTFALL_S = 0.1
SHORTFALL_FRACTION = 0.05


class AudioFileError(ValueError):
    """An audio file could not be read; the message names the file, what is wrong and the fix."""


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """High-quality resampling (soxr); a no-op when the rates match."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if rate_in == rate_out or len(audio) == 0:
        return audio
    import soxr

    return soxr.resample(audio, rate_in, rate_out).astype(np.float32, copy=False)


def to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def fix_command(path: Path) -> str:
    """A sox command whose output Doppel reads (16-bit mono PCM WAV); sox is in packaging/apt-packages.txt."""
    return f"sox {shlex.quote(str(path))} -r 16000 -c 1 -b 16 -e signed-integer fixed.wav"


def read_audio(path: str | Path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples of any common audio file and their rate (resampled to ``rate`` when given).

    Raises ``AudioFileError`` for a missing, non-audio, empty or cut-off file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"Audio file {path} does not exist.")
    channels, sr, declared_s = _decode(path)
    data = channels.mean(axis=0) if channels.shape[0] > 1 else channels[0]
    if len(data) == 0:
        raise AudioFileError(f"Audio file {path} contains no audio samples. Record it again.")
    declared_s = _wav_declared_seconds(path) or declared_s  # a WAV's own header is the better witness
    got_s = len(data) / sr
    if declared_s is not None and declared_s - got_s > max(SHORTFALL_S, SHORTFALL_FRACTION * declared_s):
        raise _cut_off(path, f"it ends early: its header promises {declared_s:.2f} s but only {got_s:.2f} s is there")
    if rate is not None and rate != sr:
        return resample(data, sr, rate), rate
    return data.astype(np.float32, copy=False), sr


read_wav = read_audio  # the older name; it always meant "read an input recording"


def _not_audio(path: Path, why: str) -> AudioFileError:
    return AudioFileError(
        f"Audio file {path} could not be read as audio ({why}). Doppel reads {TESTED_FORMATS}, at any rate "
        f"and channel count. If it is a recording in another format, convert it, e.g. `{fix_command(path)}` "
        f"or `ffmpeg -i {shlex.quote(str(path))} fixed.wav`."
    )


def _cut_off(path: Path, what: str) -> AudioFileError:
    return AudioFileError(
        f"Audio file {path} is incomplete ({what}); an interrupted download, copy or recording? "
        f"Copy it again, or keep the part that is there with `{fix_command(path)}`."
    )


def _decode(path: Path) -> tuple[np.ndarray, int, float | None]:
    """All channels as float32 (channels × samples), the rate and the duration the header declares."""
    import av

    try:
        container = av.open(str(path))
    except EOFError as exc:  # FFmpeg reached the end while still reading headers
        raise _cut_off(path, "it ends before its first audio") from exc
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise _not_audio(path, _reason(exc)) from exc
    with container:
        if not container.streams.audio:
            raise _not_audio(path, "it has no audio stream")
        stream = container.streams.audio[0]
        sr = stream.rate or stream.codec_context.sample_rate
        if not sr:
            raise _not_audio(path, "no sample rate in its header")
        declared_s = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        # Only the sample format changes here (to planar float); layout and rate stay the file's own.
        to_float = av.AudioResampler(format="fltp")
        blocks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                blocks.extend(out.to_ndarray() for out in to_float.resample(frame))
        except (av.FFmpegError, EOFError) as exc:
            got = sum(b.shape[1] for b in blocks) / sr
            raise _cut_off(path, f"it is damaged after {got:.2f} s: {_reason(exc)}") from exc
        blocks.extend(out.to_ndarray() for out in to_float.resample(None))
    if not blocks:
        return np.zeros((1, 0), dtype=np.float32), sr, declared_s
    return np.concatenate(blocks, axis=1).astype(np.float32, copy=False), sr, declared_s


def _reason(exc: BaseException) -> str:
    """FFmpeg's message without the errno and the path it repeats."""
    return str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__


def _wav_declared_seconds(path: Path) -> float | None:
    """The length a RIFF/WAVE header declares, or None (not RIFF, streamed size, no fmt/data chunk).

    FFmpeg trusts the file's size over a plain PCM header's data size, so a WAV cut short in a
    copy looks complete to it; the header still says how long the recording was.
    """
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        byte_rate = 0
        while chunk := f.read(8):
            if len(chunk) < 8:
                return None
            kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"fmt ":
                fmt = f.read(min(size, 16))
                if len(fmt) < 12:
                    return None
                byte_rate = struct.unpack("<I", fmt[8:12])[0]
                f.seek(size - len(fmt) + (size & 1), 1)
            elif kind == b"data":
                if not byte_rate or size in (0, 0xFFFFFFFF):  # streamed writers leave the size unset
                    return None
                return size / byte_rate
            else:
                f.seek(size + (size & 1), 1)
    return None


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """16-bit mono WAV."""
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(to_int16(np.asarray(audio, dtype=np.float32)).tobytes())


def rms(audio: np.ndarray) -> float:
    audio = np.asarray(audio, dtype=np.float32)
    return float(np.sqrt(np.mean(audio * audio))) if len(audio) else 0.0
