"""The language models Doppel offers by name: bundled packages, each with its measured latency.

Any GGUF on disk works by path too; these are what the settings dialog lists
first, and what ``doppel bench --replies`` compares by default.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LlmChoice:
    name: str
    kind: str  # its entry in models/manifest.toml
    label: str


CHOICES: tuple[LlmChoice, ...] = (LlmChoice("smollm2", "llm", "SmolLM2-135M-Instruct"),)
DEFAULT = CHOICES[0].name


def installed() -> list[str]:
    """The names whose package is installed (the default always counts: a missing one is reported on load)."""
    from app.model_registry import ModelError, resolve

    names = []
    for choice in CHOICES:
        try:
            if choice.name != DEFAULT:
                resolve(choice.kind)
        except (ModelError, KeyError):
            continue
        names.append(choice.name)
    return names


def path_for(model: str) -> str | None:
    """``model`` as ``Config.llm_model``: None for the default, a bundled name's file, or the path itself."""
    if model in ("", "default", DEFAULT):
        return None
    for choice in CHOICES:
        if choice.name == model:
            from app.model_registry import resolve

            return str(resolve(choice.kind))
    return model
