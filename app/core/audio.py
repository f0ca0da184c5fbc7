"""PCM helpers shared by every stage: resampling and WAV files (float32 mono)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


class AudioFileError(ValueError):
    """A WAV file could not be read; the message names the file and the fix."""


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """High-quality resampling (soxr); a no-op when the rates match."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if rate_in == rate_out or len(audio) == 0:
        return audio
    import soxr

    return soxr.resample(audio, rate_in, rate_out).astype(np.float32, copy=False)


def to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def read_wav(path: str | Path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate (resampled to ``rate`` when given)."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wf:
            channels, width, sr = wf.getnchannels(), wf.getsampwidth(), wf.getframerate()
            raw = wf.readframes(wf.getnframes())
    except FileNotFoundError as exc:
        raise AudioFileError(f"Audio file {path} does not exist.") from exc
    except (wave.Error, EOFError) as exc:
        raise AudioFileError(
            f"Audio file {path} is not a readable PCM WAV ({exc}). Convert it, e.g. "
            f"`sox {path.name} -r 16000 -c 1 -b 16 fixed.wav`."
        ) from exc
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise AudioFileError(f"Audio file {path} has {8 * width}-bit samples; use 16-bit PCM.")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    if rate is not None and rate != sr:
        return resample(data, sr, rate), rate
    return data, sr


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
