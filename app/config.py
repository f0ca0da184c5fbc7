"""Everything a user can set, in one dataclass, loaded from a TOML file and CLI flags."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import platformdirs

APP_NAME = "doppel"

# Measured on SmolLM2-135M: a plain "helpful assistant" framing and a low
# temperature give direct, factual replies; chattier personas drift.
DEFAULT_SYSTEM_PROMPT = (
    "You are Joe, a friendly and helpful person talking on a video call. "
    "Keep answers short: one or two sentences."
)


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


@dataclass(frozen=True)
class Config:
    # models (None = bundled default)
    asr_model: str | None = None
    llm_model: str | None = None
    voice: str | None = None
    requantize_llm: bool = True
    # LLM backend
    llm_backend: str = "local"  # "local" | "openai"
    base_url: str = "http://127.0.0.1:8080/v1"
    remote_model: str = ""
    api_key_env: str = "DOPPEL_API_KEY"
    fallback_to_local: bool = True
    connect_timeout_s: float = 3.0
    first_token_timeout_s: float = 15.0
    stall_timeout_s: float = 10.0  # a busy 2-core laptop serving itself can pause several seconds
    # persona and generation
    persona_name: str = "Joe"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_reply_tokens: int = 96
    temperature: float = 0.3
    context_tokens: int = 2048
    # turn-taking
    silence_ms: int = 250
    min_speech_ms: int = 160
    # threads (2-core machines: LLM and TTS share, so keep each small)
    llm_threads: int = 2
    tts_threads: int = 2
    yield_to_first_audio: bool = True  # LLM pauses while Piper makes the first clause's audio
    asr_threads: int = 2
    # paths
    log_dir: str = field(default_factory=lambda: str(data_dir() / "logs"))

    def with_overrides(self, **overrides: object) -> Config:
        """A copy with every non-None override applied (CLI flags use this)."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if v is not None and k in known})


# Config-file sections map onto flat field names.
_SECTIONS = {
    "models": {"asr": "asr_model", "llm": "llm_model", "voice": "voice", "requantize": "requantize_llm"},
    "llm": {
        "backend": "llm_backend",
        "base_url": "base_url",
        "model": "remote_model",
        "api_key_env": "api_key_env",
        "fallback_to_local": "fallback_to_local",
        "connect_timeout_s": "connect_timeout_s",
        "first_token_timeout_s": "first_token_timeout_s",
        "stall_timeout_s": "stall_timeout_s",
        "max_reply_tokens": "max_reply_tokens",
        "temperature": "temperature",
        "context_tokens": "context_tokens",
        "threads": "llm_threads",
    },
    "persona": {"name": "persona_name", "system_prompt": "system_prompt"},
    "turns": {"silence_ms": "silence_ms", "min_speech_ms": "min_speech_ms"},
    "paths": {"log_dir": "log_dir"},
}


class ConfigError(ValueError):
    pass


def load_config(path: Path | None = None) -> Config:
    """Read the TOML config; a missing default file means all defaults."""
    explicit = path is not None
    path = path or config_dir() / "config.toml"
    if not path.exists():
        if explicit:
            raise ConfigError(f"Config file {path} does not exist.")
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}. Fix the line it names.") from exc
    if "api_key" in data.get("llm", {}):
        raise ConfigError(
            f"Config file {path} holds an API key in clear. Remove it and put the key in the "
            "environment variable named by llm.api_key_env (default DOPPEL_API_KEY) or the OS keyring."
        )
    overrides: dict[str, object] = {}
    for section, keys in _SECTIONS.items():
        for key, value in data.get(section, {}).items():
            if key not in keys:
                raise ConfigError(f"Config file {path}: unknown key [{section}] {key}. Known: {', '.join(keys)}.")
            overrides[keys[key]] = value
    return Config().with_overrides(**overrides)
