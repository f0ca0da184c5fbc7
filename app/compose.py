"""The composition root: builds engines and the conversation from a Config."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.config import Config, cache_dir
from app.core.engines import AsrEngine, LlmEngine, TtsEngine, TurnEndModel
from app.model_registry import ModelError, resolve

Progress = Callable[[str, float], None]  # (message, fraction done 0..1)


def _quiet(_msg: str, _frac: float) -> None:
    pass


@dataclass
class Engines:
    asr: AsrEngine | None
    llm: LlmEngine
    tts: TtsEngine
    load_s: dict[str, float]
    turn_end: TurnEndModel | None = None  # Smart Turn, when the config's turn cues include "audio"


def load_asr(config: Config) -> AsrEngine:
    """The chosen speech recogniser (``config.asr_engine``) with its bundled model or ``asr_model``."""
    from app.model_registry import asr_kind

    path = resolve(asr_kind(config.asr_engine), config.asr_model)
    if config.asr_engine == "moonshine":
        from app.engines.asr_moonshine import MoonshineAsr

        return MoonshineAsr(path, threads=1)  # one core: the LLM and Piper keep the other
    from app.engines.asr_whisper import WhisperAsr

    return WhisperAsr(path, threads=config.asr_threads)


def load_tts(config: Config, deterministic: bool = False, workers: str | None = None) -> TtsEngine:
    """Piper; `deterministic` turns its prosody noise off (tests and benchmarks want repeatable audio).

    ``workers`` (how ONNX Runtime's idle workers wait) defaults to the CPU plan's choice.
    """
    from app.core.cpu_plan import ENGINE_THREADING
    from app.engines.tts_piper import PiperTts

    return PiperTts(
        resolve("voice", config.voice),
        threads=config.tts_threads,
        deterministic=deterministic,
        workers=workers or ENGINE_THREADING.tts_workers,
    )


def load_local_llm(config: Config) -> LlmEngine:
    from app.engines.llm_choices import path_for
    from app.engines.llm_llama import LlamaCppLlm
    from app.engines.llm_quantize import repacked, requantized, untied

    source = resolve("llm", path_for(config.llm_model))  # a model's name ("gemma") or any GGUF path
    path = source
    if config.requantize_llm:
        path = requantized(source, cache_dir() / "models", threads=config.llm_threads)
    elif config.pick_llm_file and not config.repack_llm:
        from app.engines.llm_pick import picked

        path = picked(source, cache_dir() / "models", threads=config.llm_threads)
    elif config.repack_llm:
        path = repacked(source, cache_dir() / "models", threads=config.llm_threads)
    if config.untie_llm:
        path = untied(path, cache_dir() / "models")

    def load(model: Path) -> LlmEngine:
        return LlamaCppLlm(
            model,
            threads=config.llm_threads,
            context_tokens=config.context_tokens,
            max_tokens=config.max_reply_tokens,
            temperature=config.temperature,
            context_shift=config.context_shift,
            no_repeat=config.no_repeat,
            kv_cache=config.llm_kv_cache,
            source_path=source,
        )

    try:
        return load(path)
    except ModelError:
        if path == source:
            raise
        logging.getLogger(__name__).warning("the cached copy %s did not load; using %s", path, source)
        return load(source)  # the copy is an optimisation: the model itself must still work


def load_llm(config: Config) -> LlmEngine:
    """The configured LLM backend (remote ones may fall back to the local model)."""
    if config.llm_backend == "openai":
        from app.engines.llm_openai import FallbackLlm, OpenAiCompatLlm, api_key_from_env_or_keyring

        remote = OpenAiCompatLlm(
            config.base_url,
            config.remote_model,
            api_key_from_env_or_keyring(config.api_key_env),
            max_tokens=config.max_reply_tokens,
            temperature=config.temperature,
            connect_timeout_s=config.connect_timeout_s,
            first_token_timeout_s=config.first_token_timeout_s,
            stall_timeout_s=config.stall_timeout_s,
            api_key_env=config.api_key_env,
        )
        if config.fallback_to_local:
            return FallbackLlm(remote, load_local_llm(config))
        return remote
    return load_local_llm(config)


def limit_opencv_threads() -> None:
    """The replica renders on one core (7.5 ms/frame); OpenCV's own pool would fight the LLM for the other."""
    import cv2

    cv2.setNumThreads(1)


def load_turn_end(config: Config) -> TurnEndModel:
    """Smart Turn v3.2, the turn model's audio cue (``[turns] cues`` with "audio")."""
    from app.engines.turn_smart import SmartTurn
    from app.model_registry import resolve

    return SmartTurn(resolve("turn"))


def load_engines(config: Config, progress: Progress = _quiet, with_asr: bool = True) -> Engines:
    """Load every model once; ``progress`` reports each step (for the GUI's progress bar)."""
    limit_opencv_threads()
    times: dict[str, float] = {}
    steps: list[tuple[str, Callable[[Config], object]]] = [("llm", load_llm), ("tts", load_tts)]
    if with_asr:
        steps.insert(0, ("asr", load_asr))
        if "audio" in config.turn_cues.split("+"):
            steps.append(("turn", load_turn_end))
    loaded: dict[str, object] = {}
    for i, (name, loader) in enumerate(steps):
        progress(f"Loading {name.upper()} model", i / len(steps))
        started = time.perf_counter()
        loaded[name] = loader(config)
        times[name] = time.perf_counter() - started
    progress("Models ready", 1.0)
    return Engines(
        asr=loaded.get("asr"),  # type: ignore[arg-type]
        llm=loaded["llm"],  # type: ignore[arg-type]
        tts=loaded["tts"],  # type: ignore[arg-type]
        load_s=times,
        turn_end=loaded.get("turn"),  # type: ignore[arg-type]
    )
