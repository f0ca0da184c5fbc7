"""`doppel render`: speak a text with the replica and write an MP4 (H.264 + AAC).

Uses the same path as the live app (PiperTts -> Replica.push_audio ->
Replica.render on the audio clock), only on a virtual clock, so a clip is a
faithful, reproducible record of what the app would show.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.engines import SpeechChunk
from app.replica.face import NoFaceError
from app.replica.replica import Replica

LEAD_IN_S = 0.4  # idle face before the first word
TAIL_S = 0.6  # and after the last


@dataclass(frozen=True)
class ClipStats:
    frames: int
    seconds: float
    render_ms_median: float


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser | None = None) -> None:
    """Add the ``render`` command to the app's CLI (``common`` carries --voice and the model options)."""
    p = subparsers.add_parser(
        "render",
        parents=[common] if common is not None else [],
        help="speak a text with the replica and save it as an MP4",
        description="Render a talking-face clip offline: Piper speaks the text, the replica lip-syncs, "
        "and the video is written with the speech muxed in.",
    )
    p.add_argument("--text", required=True, help="what the replica says")
    p.add_argument("--face", type=Path, help="photo to build the replica from (default: --photo, else the bundled one)")
    if common is None:
        p.add_argument("--voice", metavar="ONNX", help="Piper voice (.onnx with .onnx.json beside it)")
    p.add_argument("--out", type=Path, required=True, help="output video, e.g. clip.mp4")
    p.add_argument("--seed", type=int, default=0, help="seed for idle motion (blinks, head sway)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, config: object | None = None) -> int:
    """Entry point for ``doppel render``; returns a process exit code."""
    from app.engines.tts_piper import PiperTts
    from app.model_registry import ModelError, resolve

    try:
        replica = _load_replica(args.face or getattr(config, "face_photo", None), args.seed)
        # --voice, else the config's [models] voice (the app's CLI passes its Config), else the bundled one.
        voice = getattr(args, "voice", None) or getattr(config, "voice", None)
        tts = PiperTts(resolve("voice", voice))
    except (NoFaceError, ModelError, OSError) as exc:
        print(f"doppel render: {exc}", file=sys.stderr)
        return 2
    chunks = list(tts.synthesize(args.text))
    if not chunks:
        print("doppel render: the text has nothing to say; pass some words with --text.", file=sys.stderr)
        return 2
    try:
        stats = render_clip(replica, chunks, args.out)
    except (OSError, RuntimeError) as exc:
        print(f"doppel render: could not write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out}: {stats.frames} frames, {stats.seconds:.1f} s, "
        f"{stats.render_ms_median:.1f} ms/frame to render"
    )
    return 0


def _load_replica(face: Path | str | None, seed: int) -> Replica:
    return Replica.from_assets(seed) if face is None else Replica.from_file(face, seed)


def render_clip(replica: Replica, chunks: list[SpeechChunk], out: Path, start_ns: int = 10**12) -> ClipStats:
    """Push the chunks back to back on a virtual clock, render every frame, mux with the audio."""
    import imageio_ffmpeg

    sr = chunks[0].sample_rate
    t = start_ns + round(LEAD_IN_S * 1e9)
    pieces = [np.zeros(round(LEAD_IN_S * sr), np.float32)]
    for chunk in chunks:
        audio = chunk.audio if chunk.sample_rate == sr else _resample(chunk.audio, chunk.sample_rate, sr)
        replica.push_audio(chunk, t)
        t += round(len(chunk.audio) / chunk.sample_rate * 1e9)
        pieces.append(audio.astype(np.float32))
    pieces.append(np.zeros(round(TAIL_S * sr), np.float32))
    audio = np.concatenate(pieces)
    seconds = len(audio) / sr
    n_frames = int(np.ceil(seconds * replica.fps))

    out.parent.mkdir(parents=True, exist_ok=True)
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="doppel-render-") as tmp:
        wav = Path(tmp) / "speech.wav"
        _write_wav(wav, audio, sr)
        writer = imageio_ffmpeg.write_frames(
            str(out),
            replica.size,
            pix_fmt_in="bgr24",
            fps=replica.fps,
            codec="libx264",
            quality=None,
            macro_block_size=16,
            ffmpeg_log_level="error",
            output_params=["-crf", "20", "-preset", "veryfast", "-shortest", "-movflags", "+faststart"],
            audio_path=str(wav),
            audio_codec="aac",
        )
        writer.send(None)
        try:
            for i in range(n_frames):
                t0 = time.perf_counter()
                frame = replica.render(start_ns + round(i * 1e9 / replica.fps))
                times.append(time.perf_counter() - t0)
                writer.send(np.ascontiguousarray(frame.image))
        finally:
            writer.close()
    return ClipStats(n_frames, seconds, 1000.0 * float(np.median(times)))


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def _resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear resampling; only used if a voice ever changed rate mid-text."""
    n = round(len(audio) * dst / src)
    return np.interp(np.arange(n) * src / dst, np.arange(len(audio)), audio).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """Standalone use (``python -m app.replica.cli_render``) until the app's CLI imports it."""
    parser = argparse.ArgumentParser(prog="doppel")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
