"""`doppel doctor`: what was found, how long it took to load, and what to fix."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.config import Config
from app.model_registry import MODEL_KINDS, ModelError, asr_kind, resolve


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)  # the app cannot work
    warnings: list[str] = field(default_factory=list)  # it works, with less

    def line(self, label: str, value: str) -> None:
        print(f"  {label:<14} {value}")


def _size(path: os.PathLike[str] | str) -> str:
    from pathlib import Path

    p = Path(path)
    total = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return f"{total / 1e6:.0f} MB"


def _llm_copies(report: Report, config: Config, path: Path) -> None:
    """Which cached copy of the GGUF the app runs (a re-quantized one, then its untied output layer)."""
    from app.config import cache_dir
    from app.engines.gguf_untie import is_tied
    from app.engines.llm_quantize import (
        UNTIED_KIND,
        copy_path_for,
        q8_path_for,
        repack_path_for,
        wants_repack,
        wants_requantize,
    )

    models = cache_dir() / "models"
    if config.requantize_llm and wants_requantize(path):
        path = q8_path_for(path, models)
        report.line("", f"runs as its Q8_0 copy {path}")
    elif config.pick_llm_file and not config.repack_llm and wants_requantize(path):
        from app.engines.llm_pick import remembered

        choice = remembered(path, models, config.llm_threads)
        if choice is None:
            report.line("", "the first start times it against its Q8_0 copy on this CPU and keeps the faster")
        else:
            ms = ", ".join(f"{name} {value:.0f} ms" for name, value in choice["ms"].items())
            if choice["file"] == "q8_0":
                path = q8_path_for(path, models)
            report.line("", f"runs as {'its Q8_0 copy' if choice['file'] == 'q8_0' else 'shipped'}: faster here ({ms})")
    elif config.repack_llm and not config.requantize_llm and wants_repack(path):
        path = repack_path_for(path, models)
        report.line("", f"runs as its IQ4_NL copy {path} (repacked by llama.cpp)")
    if config.untie_llm and (is_tied(path) or not path.exists()):
        if not path.exists():  # the re-quantized copy is made first; its untied copy after it
            report.line("", "output layer untied, in a copy made from that one (--no-untie: as it is)")
            return
        untied = copy_path_for(path, models, UNTIED_KIND)
        state = "" if untied.exists() else ", made on first use"
        report.line("", f"output layer untied: {untied}{state} (--no-untie: the file as it is)")


def check_models(config: Config, report: Report, load: bool = True) -> None:
    from app import compose

    print("Models")
    user_paths = {"asr": config.asr_model, "llm": config.llm_model, "voice": config.voice}
    loaders: dict[str, Callable[[Config], object]] = {
        "asr": compose.load_asr,
        "llm": compose.load_local_llm,
        "voice": compose.load_tts,
    }
    report.line("asr engine", f"{config.asr_engine} (--asr whisper|moonshine, or [models] asr_engine)")
    for kind in MODEL_KINDS:
        try:
            path = resolve(asr_kind(config.asr_engine) if kind == "asr" else kind, user_paths[kind])
        except ModelError as exc:
            report.line(kind, "MISSING")
            report.problems.append(str(exc))
            continue
        source = "your path" if user_paths[kind] else "bundled"
        report.line(kind, f"{path} ({_size(path)}, {source})")
        if kind == "llm":
            _llm_copies(report, config, path)
        if not load:
            continue
        started = time.perf_counter()
        try:
            loaders[kind](config)
        except ModelError as exc:
            report.line("", "does not load")
            report.problems.append(str(exc))
            continue
        report.line("", f"loads in {time.perf_counter() - started:.2f} s")
    if config.llm_backend == "openai":
        report.line("llm backend", f"openai-compatible server at {config.base_url} (model {config.remote_model!r})")
    try:  # the face mesh: only a replica made from a photo needs it, so its absence is a warning
        report.line("face mesh", f"{resolve('face')} ({_size(resolve('face'))}, bundled)")
    except ModelError as exc:
        report.line("face mesh", "MISSING")
        report.warnings.append(f"{exc} Without it a replica from a photo is fitted by Haar cascades (less exact).")


def check_audio(report: Report) -> None:
    print("Audio")
    try:
        import sounddevice as sd
    except OSError as exc:
        report.line("portaudio", "MISSING")
        report.warnings.append(
            f"PortAudio is not installed ({exc}): no microphone or speaker. Fix: sudo apt-get install "
            "libportaudio2. Text chat still works."
        )
        return
    devices = sd.query_devices()
    inputs = [d for d in devices if d["max_input_channels"] > 0]
    outputs = [d for d in devices if d["max_output_channels"] > 0]
    if not devices:
        report.line("devices", "none")
    for d in inputs:
        report.line("microphone", f"{d['name']} ({int(d['default_samplerate'])} Hz)")
    for d in outputs:
        report.line("speaker", f"{d['name']} ({int(d['default_samplerate'])} Hz)")
    if not inputs:
        report.warnings.append("No microphone found: type your messages instead (text chat works).")
    if not outputs:
        report.warnings.append("No speaker found: replies are shown and animated but not heard.")


def check_camera(report: Report, max_index: int = 3) -> None:
    print("Camera")
    import cv2

    found = []
    for index in range(max_index):
        if not os.path.exists(f"/dev/video{index}") and os.name == "posix":
            continue
        cap = cv2.VideoCapture(index)
        if cap.isOpened():
            found.append(index)
        cap.release()
    for index in found:
        report.line("camera", f"index {index}")
    if not found:
        report.line("camera", "none")
        report.warnings.append("No camera found: the replica cannot see you (no gaze, no greeting); all else works.")


def check_cpu(config: Config, report: Report) -> None:
    """The threads each engine gets and how idle threads wait: the CPU plan's fixed part (docs/cpu-plan.md)."""
    print("CPU")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    report.line("cores", f"{cores} usable")
    plan = "on" if config.cpu_plan else "off ([cpu] plan = false)"
    threads = f"LLM {config.llm_threads}, ASR {config.asr_threads}, voice {config.tts_threads}"
    report.line("threads", f"{threads}; plan {plan}")
    waits = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS"))
    report.line("idle threads", waits)
    from app.engines.llm_attention import describe_attention

    report.line("attention", describe_attention())
    if os.environ.get("OPENBLAS_NUM_THREADS", "1") != "1":
        report.warnings.append(
            "OPENBLAS_NUM_THREADS is set above 1: numpy's worker then polls beside the LLM after every matrix "
            "product, and the first token comes later. Unset it to let Doppel keep numpy on one thread."
        )


def check_display(report: Report) -> None:
    print("Display")
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    try:
        import PySide6

        report.line("Qt", f"PySide6 {PySide6.__version__}, platform {platform or 'auto'}")
    except ImportError as exc:
        report.problems.append(
            f"PySide6 is not installed ({exc}). Fix: run `make run` or `pip install PySide6-Essentials`."
        )
        return
    if not has_display and platform not in ("offscreen", "minimal") and os.name == "posix":
        report.warnings.append(
            "No display ($DISPLAY unset): the window cannot open here. Use `doppel chat`, `doppel converse`, "
            "or run under Xvfb (`xvfb-run doppel`), or set QT_QPA_PLATFORM=offscreen for tests."
        )


def run(args: argparse.Namespace, config: Config) -> int:
    report = Report()
    check_models(config, report)
    check_audio(report)
    check_camera(report)
    check_cpu(config, report)
    check_display(report)
    print()
    for w in report.warnings:
        print(f"note: {w}")
    for p in report.problems:
        print(f"PROBLEM: {p}")
    if report.problems:
        print("\nVerdict: Doppel cannot start until the problems above are fixed.")
        return 1
    if report.warnings:
        print("\nVerdict: ready, with the limits noted above.")
    else:
        print("\nVerdict: ready. Run `doppel` (or `make run`).")
    return 0
