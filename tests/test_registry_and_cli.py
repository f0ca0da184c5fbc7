"""Model resolution, clear errors for bad models, `doppel --help` and `doppel doctor`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.config import ConfigError, load_config
from app.model_registry import ModelError, resolve

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_models_resolve() -> None:
    assert (resolve("asr") / "model.bin").is_file()
    assert resolve("llm").suffix == ".gguf"
    assert resolve("voice").with_suffix(".onnx.json").is_file()


def test_missing_user_model_names_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        resolve("llm", tmp_path / "nope.gguf")
    message = str(err.value)
    assert "nope.gguf" in message and "does not exist" in message and "Check the path" in message


def test_corrupt_gguf_is_rejected_before_loading(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve("llm", bad)


def test_incomplete_asr_dir_and_voice_without_config(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"missing config\.json, tokenizer\.json"):
        resolve("asr", tmp_path)
    voice = tmp_path / "v.onnx"
    voice.write_bytes(b"x" * 4096)
    with pytest.raises(ModelError, match=r"v\.onnx\.json"):
        resolve("voice", voice)


def test_config_file_overrides_and_rejects_keys_in_clear(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[models]\nllm = "/x/y.gguf"\n[turns]\nsilence_ms = 300\n')
    config = load_config(cfg)
    assert config.llm_model == "/x/y.gguf" and config.silence_ms == 300
    cfg.write_text('[llm]\napi_key = "sk-secret"\n')
    with pytest.raises(ConfigError, match="API key in clear"):
        load_config(cfg)
    cfg.write_text("[turns]\nsilence = 3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(cfg)


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for word in ("doctor", "chat", "--llm-model", "--voice", "--base-url", "doppel doctor"):
        assert word in out


def _doppel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_doctor_passes_with_bundled_models() -> None:
    done = _doppel("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verdict: ready" in done.stdout
    assert "loads in" in done.stdout
    assert "ASR 1" in done.stdout and "OPENBLAS_NUM_THREADS=1" in done.stdout  # the thread plan, shown
    assert "attention" in done.stdout  # which decode kernel llama.cpp runs


def test_doctor_fails_readably_on_wrong_model_path(tmp_path: Path) -> None:
    done = _doppel("doctor", "--llm-model", str(tmp_path / "missing.gguf"))
    assert done.returncode != 0
    assert "missing.gguf" in done.stdout and "does not exist" in done.stdout
    assert "Verdict: Doppel cannot start" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
