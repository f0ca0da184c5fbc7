"""The app's persisted settings: one enum of keys over QSettings, typed defaults, Config overlay.

The TOML config and CLI flags say how Doppel runs by default; what the user
picks in the window (devices, persona, models, modes) is remembered here and
restored on the next start.  A flag given on the command line still wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from PySide6.QtCore import QSettings

from app.config import APP_NAME, Config

ORGANISATION = "Doppel"
DEVICE_OFF = "off"  # a device the user switched off (distinct from "" = the system default)


class SettingKey(StrEnum):
    MIC_MODE = "audio/mic_mode"  # MicMode value
    MUTED = "audio/muted"
    MICROPHONE = "devices/microphone"  # device name, "" = default, "off"
    SPEAKER = "devices/speaker"
    CAMERA = "devices/camera"  # camera id or video file, "" = first camera, "off"
    PERSONA_NAME = "persona/name"  # "" = from the config
    SYSTEM_PROMPT = "persona/system_prompt"
    VOICE = "persona/voice"
    LLM_MODEL = "models/llm"
    ASR_MODEL = "models/asr"
    ASR_ENGINE = "models/asr_engine"  # "moonshine" | "whisper", "" = from the config
    GREET = "vision/greet"
    GREETING = "vision/greeting"
    PAUSE_WHEN_AWAY = "vision/pause_when_away"
    HUD_VISIBLE = "view/hud_visible"
    WINDOW_GEOMETRY = "view/geometry"
    FIRST_RUN_GUIDE_SEEN = "view/first_run_guide_seen"  # dismissed once: never shown again


DEFAULTS: dict[SettingKey, bool | str] = {
    SettingKey.MIC_MODE: "hands_free",
    SettingKey.MUTED: False,
    SettingKey.MICROPHONE: "",
    SettingKey.SPEAKER: "",
    SettingKey.CAMERA: "",
    SettingKey.PERSONA_NAME: "",
    SettingKey.SYSTEM_PROMPT: "",
    SettingKey.VOICE: "",
    SettingKey.LLM_MODEL: "",
    SettingKey.ASR_MODEL: "",
    SettingKey.ASR_ENGINE: "",
    SettingKey.GREET: True,
    SettingKey.GREETING: "Hello!",
    SettingKey.PAUSE_WHEN_AWAY: True,
    SettingKey.HUD_VISIBLE: True,
    SettingKey.WINDOW_GEOMETRY: "",
    SettingKey.FIRST_RUN_GUIDE_SEEN: False,
}

# Settings that override a Config field when set (non-empty).
_CONFIG_FIELDS = {
    SettingKey.PERSONA_NAME: "persona_name",
    SettingKey.SYSTEM_PROMPT: "system_prompt",
    SettingKey.VOICE: "voice",
    SettingKey.LLM_MODEL: "llm_model",
    SettingKey.ASR_MODEL: "asr_model",
    SettingKey.ASR_ENGINE: "asr_engine",
}
# Changing one of these means loading models again.
MODEL_KEYS = (SettingKey.VOICE, SettingKey.LLM_MODEL, SettingKey.ASR_MODEL, SettingKey.ASR_ENGINE)


def default_qsettings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APP_NAME)


class AppSettings:
    """Typed access to a QSettings store (tests pass one backed by a temporary file)."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else default_qsettings()

    def get(self, key: SettingKey) -> bool | str:
        default = DEFAULTS[key]
        value = self.store.value(key.value, default)
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")
        return "" if value is None else str(value)

    def flag(self, key: SettingKey) -> bool:
        return bool(self.get(key))

    def text(self, key: SettingKey) -> str:
        return str(self.get(key))

    def set(self, key: SettingKey, value: bool | str) -> None:
        """Store and write through at once: a crash or kill -9 must not take the user's choice with it."""
        self.store.setValue(key.value, value)
        self.store.sync()

    def update(self, values: dict[SettingKey, bool | str]) -> list[SettingKey]:
        """Store several values; returns the keys whose value changed."""
        changed = [k for k, v in values.items() if self.get(k) != v]
        for key in changed:
            self.set(key, values[key])
        self.sync()
        return changed

    def sync(self) -> None:
        self.store.sync()

    def apply_to(self, config: Config, keep: Iterable[str] = ()) -> Config:
        """The config with every non-empty setting applied, except fields named in ``keep`` (CLI flags)."""
        kept = set(keep)
        overrides = {
            field: self.text(key) for key, field in _CONFIG_FIELDS.items() if self.text(key) and field not in kept
        }
        return config.with_overrides(**overrides)
