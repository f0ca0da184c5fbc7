"""Settings: devices, persona, models and vision, read from and returned as ``SettingKey`` values.

The dialog never applies anything itself: the window stores what ``values()``
returns and tells the session what changed.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.config import Config
from app.engines import llm_choices
from app.ui.devices import DeviceProvider, Listing
from app.ui.settings import DEVICE_OFF, AppSettings, SettingKey

RECENT_LLMS = "models/llm_recent"  # GGUF files picked before, newest first
RECENT_KEEP = 5

ASR_ENGINE_LABELS = {
    "whisper": "Whisper tiny.en (default: hears best)",
    "moonshine": "Moonshine tiny (faster, mishears more)",
}


def _device_combo(listing: Listing, current: str) -> QComboBox:
    combo = QComboBox()
    combo.addItem("System default", "")
    for device_id, label in listing():
        combo.addItem(label, device_id)
    if current and current != DEVICE_OFF and combo.findData(current) < 0:
        combo.addItem(f"{current} (not connected)", current)
    combo.addItem("Off", DEVICE_OFF)
    combo.setCurrentIndex(max(0, combo.findData(current)))
    return combo


def _path_row(edit: QLineEdit, pick_dir: bool, filter_: str = "") -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    browse = QPushButton("Browse…")

    def pick() -> None:
        if pick_dir:
            path = QFileDialog.getExistingDirectory(row, "Choose a folder", edit.text())
        else:
            path, _ = QFileDialog.getOpenFileName(row, "Choose a file", edit.text(), filter_)
        if path:
            edit.setText(path)

    browse.clicked.connect(pick)
    layout.addWidget(browse)
    return row


def recent_llms(settings: AppSettings) -> list[str]:
    value = settings.store.value(RECENT_LLMS, [])
    items = [value] if isinstance(value, str) else list(value or [])
    return [str(v) for v in items if v]


def remember_llm(settings: AppSettings, model: str) -> None:
    """A GGUF path the user chose goes to the top of the recent list (names of bundled models do not)."""
    if not model or model in llm_choices.BY_NAME:
        return
    kept = [model, *(m for m in recent_llms(settings) if m != model)][:RECENT_KEEP]
    settings.store.setValue(RECENT_LLMS, kept)
    settings.store.sync()


def _llm_picker(settings: AppSettings, current: str, edit: QLineEdit) -> QComboBox:
    """Bundled and opt-in models with their measured latency, then recent files; picking one fills ``edit``."""
    combo = QComboBox()
    for choice in llm_choices.CHOICES:
        value = "" if choice.name == llm_choices.DEFAULT else choice.name
        if llm_choices.is_installed(choice):
            combo.addItem(llm_choices.describe(choice), value)
        else:
            combo.addItem(f"{choice.label}: not installed ({choice.install})", None)
            combo.model().item(combo.count() - 1).setEnabled(False)  # type: ignore[attr-defined]
    for path in [current, *recent_llms(settings)]:
        if path and combo.findData(path) < 0:
            combo.addItem(f"{Path(path).name}: latency not measured ({path})", path)
    combo.setCurrentIndex(max(0, combo.findData(current)))

    def picked(index: int) -> None:
        value = combo.itemData(index)
        if value is not None:
            edit.setText(value)

    combo.activated.connect(picked)
    return combo


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, devices: DeviceProvider, config: Config, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Doppel settings")
        self.setMinimumWidth(560)
        tabs = QTabWidget()
        text = settings.text

        self.microphone = _device_combo(devices.list_microphones, text(SettingKey.MICROPHONE))
        self.speaker = _device_combo(devices.list_speakers, text(SettingKey.SPEAKER))
        self.camera = _device_combo(devices.list_cameras, text(SettingKey.CAMERA))
        dev = QWidget()
        form = QFormLayout(dev)
        form.addRow("Microphone", self.microphone)
        form.addRow("Speaker", self.speaker)
        form.addRow("Camera", self.camera)
        tabs.addTab(dev, "Devices")

        self.persona_name = QLineEdit(text(SettingKey.PERSONA_NAME))
        self.persona_name.setPlaceholderText(config.persona_name)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlainText(text(SettingKey.SYSTEM_PROMPT) or config.system_prompt)
        self.voice = QLineEdit(text(SettingKey.VOICE))
        self.voice.setPlaceholderText("bundled voice (a Piper .onnx file)")
        persona = QWidget()
        form = QFormLayout(persona)
        form.addRow("Name", self.persona_name)
        form.addRow("System prompt", self.system_prompt)
        form.addRow("Voice", _path_row(self.voice, False, "Piper voice (*.onnx)"))
        tabs.addTab(persona, "Persona")

        self.llm_model = QLineEdit(text(SettingKey.LLM_MODEL))
        self.llm_model.setPlaceholderText("bundled model (a .gguf file)")
        self.llm_choice = _llm_picker(settings, text(SettingKey.LLM_MODEL), self.llm_model)
        self._settings = settings
        self.asr_engine = QComboBox()
        for engine, label in ASR_ENGINE_LABELS.items():
            self.asr_engine.addItem(label, engine)
        chosen = text(SettingKey.ASR_ENGINE) or config.asr_engine
        self.asr_engine.setCurrentIndex(max(0, self.asr_engine.findData(chosen)))
        self._config_engine = config.asr_engine
        self.asr_model = QLineEdit(text(SettingKey.ASR_MODEL))
        self.asr_model.setPlaceholderText("bundled model (a folder for the chosen recogniser)")
        models = QWidget()
        form = QFormLayout(models)
        form.addRow("Language model", self.llm_choice)
        form.addRow("Model file", _path_row(self.llm_model, False, "GGUF model (*.gguf)"))
        form.addRow("Speech recogniser", self.asr_engine)
        form.addRow("Recogniser model", _path_row(self.asr_model, True))
        note = QLabel(
            "Changing a model or the voice reloads the models (the conversation restarts, the app does not). "
            "Latency and right answers are from the reply bench on 2 CPU cores (docs/bench/replies.md)."
        )
        note.setWordWrap(True)
        form.addRow(note)
        tabs.addTab(models, "Models")

        self.greet = QCheckBox("Greet me when my face first appears")
        self.greet.setChecked(settings.flag(SettingKey.GREET))
        self.greeting = QLineEdit(text(SettingKey.GREETING))
        self.pause_when_away = QCheckBox("Hands-free: stop listening while nobody is in front of the camera")
        self.pause_when_away.setChecked(settings.flag(SettingKey.PAUSE_WHEN_AWAY))
        vision = QWidget()
        form = QFormLayout(vision)
        form.addRow(self.greet)
        form.addRow("Greeting (sent as if you said it)", self.greeting)
        form.addRow(self.pause_when_away)
        tabs.addTab(vision, "Vision")

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)
        self._default_prompt = config.system_prompt if not text(SettingKey.SYSTEM_PROMPT) else ""

    def accept(self) -> None:
        remember_llm(self._settings, self.llm_model.text().strip())
        super().accept()

    def values(self) -> dict[SettingKey, bool | str]:
        prompt = self.system_prompt.toPlainText().strip()
        if prompt == self._default_prompt.strip():
            prompt = ""  # unchanged default: keep following the config file
        engine = str(self.asr_engine.currentData())
        return {
            SettingKey.MICROPHONE: self.microphone.currentData(),
            SettingKey.SPEAKER: self.speaker.currentData(),
            SettingKey.CAMERA: self.camera.currentData(),
            SettingKey.PERSONA_NAME: self.persona_name.text().strip(),
            SettingKey.SYSTEM_PROMPT: prompt,
            SettingKey.VOICE: self.voice.text().strip(),
            SettingKey.LLM_MODEL: self.llm_model.text().strip(),
            SettingKey.ASR_MODEL: self.asr_model.text().strip(),
            # The config's engine stays "" (follow the config file) unless the user picked another one.
            SettingKey.ASR_ENGINE: "" if engine == self._config_engine else engine,
            SettingKey.GREET: self.greet.isChecked(),
            SettingKey.GREETING: self.greeting.text().strip(),
            SettingKey.PAUSE_WHEN_AWAY: self.pause_when_away.isChecked(),
        }
