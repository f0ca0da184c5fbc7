"""Everything a user can set, in one dataclass, loaded from a TOML file and CLI flags."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import platformdirs

APP_NAME = "doppel"

# Measured on SmolLM2-135M: a plain "helpful assistant" framing and a low
# temperature give direct, factual replies; chattier personas drift.
# The persona prompt names the replica: "{name}" is the persona's name, so a replica made from a photo and
# given another name and voice introduces itself by that name (a prompt of one's own may use {name} too).
PERSONA_PROMPT = (
    "You are {name}, a friendly and helpful person talking on a video call. Keep answers short: one or two sentences."
)
DEFAULT_SYSTEM_PROMPT = PERSONA_PROMPT.format(name="Joe")


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


@dataclass(frozen=True)
class Config:
    # models (None = bundled default)
    # Speech recogniser. Measured on the bench's questions and their noisy, fast and accented variants
    # (docs/asr.md): Whisper tiny.en understood 88 of 108 (WER 8.1 %), Moonshine tiny 76 (11.4 %), for
    # ~40 ms more compute per question (p50 114-137 vs 88-116 ms). A misheard question costs a whole
    # turn, so Whisper is the default; "moonshine" is the faster choice.
    asr_engine: str = "whisper"  # "whisper" | "moonshine"
    asr_model: str | None = None  # a folder for the chosen engine (None: the bundled one)
    llm_model: str | None = None
    voice: str | None = None
    # Always run a Q4/Q5 GGUF as its cached Q8_0 copy.  Which of the two is faster depends on the CPU
    # (Xeon: the Q4_1 by 5-10 %; AMD EPYC: the copy by 7 %, prompts 2x; docs/cpu-plan.md).
    requantize_llm: bool = False
    # Unless --requantize forces the copy: measure the shipped file against its Q8_0 copy once per CPU
    # and run the faster (app/engines/llm_pick.py); false runs the shipped file as it is.
    pick_llm_file: bool = True
    repack_llm: bool = False  # run a Q4_1/Q5/Q8 GGUF as a cached IQ4_NL copy llama.cpp repacks (docs/cpu-plan.md)
    # Tied embeddings get an output layer of their own (a cached copy, same weights): ~5 % faster bare
    # decode, but no change in the levers' TPS (84 vs 84 tok/s, 2026-12-06), so it is opt-in.
    untie_llm: bool = False
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
    # The replica's face: a photo or webcam snapshot (None: the bundled portrait). Name and voice go with it.
    face_photo: str | None = None
    max_reply_tokens: int = 96
    temperature: float = 0.3
    context_tokens: int = 2048
    # The most prompt (persona + history + the new message) a reply starts from. Every token of
    # history is read again for each token of the reply: at 2,048 the long session decoded ~30 %
    # slower by its last turns. Trimmed oldest-first, between turns (docs/cpu-plan.md).
    history_tokens: int = 640
    # Drop trimmed history from the KV cache instead of evaluating the rest again: a trim then
    # costs ~0.7 s instead of ~3 s, but a fixed reply's log-likelihood came out 6-8 % worse
    # (docs/bench/levers.md), so it is off unless chosen.
    context_shift: bool = False
    # Keep a reply from copying an earlier one (llama.cpp's DRY sampler, shown the earlier replies): without
    # it the 135M model answered 16 of 22 questions of the bench's long session with one sentence
    # (app/engines/llm_variety.py, docs/cpu-plan.md). Local LLM only.
    no_repeat: bool = True
    # The KV cache: "f16" with flash attention decoded 2-11 % faster than "q8_0" (also with it) on the
    # AMD EPYC host, most at the long prompts of a long chat; "plain" is llama.cpp's default, f16 without
    # flash attention (docs/cpu-plan.md, "The KV cache").
    llm_kv_cache: str = "f16"
    # turn-taking
    silence_ms: int = 250  # a pause this long ends a turn the turn model judges complete
    max_silence_ms: int = 1500  # ...and this long one it judges unfinished ("so I was thinking, um")
    # Which cues judge a pause (app/core/turn_model.py): text, llm (P(end of turn) from the loaded LLM),
    # audio (Smart Turn v3.2), joined with "+"; "off" is the fixed window. Chosen by measurement: docs/turn-taking.md.
    turn_cues: str = "text+llm"
    turn_llm_threshold: float = 0.8  # below this P(end of turn) after the user's words, the turn is unfinished
    backchannels_resume: bool = True  # "mm-hmm" while the replica speaks pauses it, then it goes on
    min_speech_ms: int = 160
    # While the user speaks, transcribe the growing utterance every 0.4 s and evaluate the words so far
    # into the LLM's KV cache (the listening phase leaves the cores free): TTFT then covers a few tokens.
    prefill_while_speaking: bool = True
    # threads (2-core machines: LLM and TTS share, so keep each small)
    llm_threads: int = 2
    tts_threads: int = 2
    yield_to_first_audio: bool = True  # LLM pauses while Piper makes the first clause's audio
    cpu_plan: bool = True  # who gets the cores in each phase of a turn (app/core/cpu_plan.py, docs/cpu-plan.md)
    # Whisper on one thread: CTranslate2's two threads meet at ~1,700 barriers per question, and each is a
    # sleep and a wake-up; on a 2-core VM a question took 83 ms on two threads and 44 on one, the same text
    # (docs/cpu-plan.md). The other core stays with the LLM's prefill while drafts run.
    asr_threads: int = 1
    # paths
    log_dir: str = field(default_factory=lambda: str(data_dir() / "logs"))

    def __post_init__(self) -> None:
        """The persona prompt follows the persona's name ({name}, or the default prompt under another name)."""
        head, tail = PERSONA_PROMPT.split("{name}")
        prompt = self.system_prompt
        if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) > len(head) + len(tail):
            prompt = PERSONA_PROMPT
        if "{name}" in prompt:
            object.__setattr__(self, "system_prompt", prompt.replace("{name}", self.persona_name.strip()))

    def with_overrides(self, **overrides: object) -> Config:
        """A copy with every non-None override applied (CLI flags use this)."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if v is not None and k in known})


# Config-file sections map onto flat field names.
_SECTIONS = {
    "models": {
        "asr_engine": "asr_engine",
        "asr": "asr_model",
        "llm": "llm_model",
        "voice": "voice",
        "requantize": "requantize_llm",
        "pick_file": "pick_llm_file",
        "repack": "repack_llm",
        "untie": "untie_llm",
    },
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
        "history_tokens": "history_tokens",
        "context_shift": "context_shift",
        "no_repeat": "no_repeat",
        "kv_cache": "llm_kv_cache",
        "threads": "llm_threads",
    },
    "persona": {"name": "persona_name", "system_prompt": "system_prompt", "photo": "face_photo"},
    "turns": {
        "silence_ms": "silence_ms",
        "max_silence_ms": "max_silence_ms",
        "cues": "turn_cues",
        "llm_threshold": "turn_llm_threshold",
        "backchannels_resume": "backchannels_resume",
        "min_speech_ms": "min_speech_ms",
        "prefill_while_speaking": "prefill_while_speaking",
    },
    "cpu": {"plan": "cpu_plan"},
    "paths": {"log_dir": "log_dir"},
}


class ConfigError(ValueError):
    pass


# What a value in the file may be, beyond its type: (low, high) for numbers, a set of choices,
# or a check for strings with the words that explain it.
_NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "connect_timeout_s": (0.1, 600.0),
    "first_token_timeout_s": (0.1, 600.0),
    "stall_timeout_s": (0.1, 600.0),
    "max_reply_tokens": (1, 4096),
    "temperature": (0.0, 2.0),
    "context_tokens": (512, 131072),
    "history_tokens": (256, 131072),
    "silence_ms": (32, 5000),
    "max_silence_ms": (32, 5000),
    "turn_llm_threshold": (0.0, 1.0),
    "min_speech_ms": (32, 5000),
    "llm_threads": (1, 256),
}
_CHOICES = {
    "llm_backend": ("local", "openai"),
    "asr_engine": ("whisper", "moonshine"),
    "llm_kv_cache": ("f16", "q8_0", "plain"),
    "turn_cues": ("off", "text", "llm", "audio", "text+llm", "text+audio", "llm+audio", "text+llm+audio"),
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SECRET_WORDS = ("api_key", "apikey", "token", "secret", "password")


def load_config(path: Path | None = None) -> Config:
    """Read the TOML config; a missing default file means all defaults.

    Anything the loader does not understand is refused with a message naming the
    key and what it expects, rather than surfacing later as a crash.
    """
    explicit = path is not None
    path = path or config_dir() / "config.toml"
    if not path.exists():
        if explicit:
            raise ConfigError(f"Config file {path} does not exist.")
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} cannot be read ({exc}). It must be a UTF-8 text file.") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}. Fix the line it names.") from exc
    return Config().with_overrides(**_overrides(path, data))


def _overrides(path: Path, data: dict) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for section, table in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"Config file {path}: unknown section [{section}]. Known: {', '.join(_SECTIONS)}.")
        if not isinstance(table, dict):
            raise ConfigError(f"Config file {path}: {section} must be a section ([{section}]), not a value.")
        keys = _SECTIONS[section]
        for key, value in table.items():
            if key not in keys and any(word in key.lower() for word in _SECRET_WORDS):
                raise ConfigError(
                    f"Config file {path} holds an API key in clear ([{section}] {key}). Remove it and put the key "
                    "in the environment variable named by llm.api_key_env (default DOPPEL_API_KEY) or the OS keyring."
                )
            if key not in keys:
                raise ConfigError(f"Config file {path}: unknown key [{section}] {key}. Known: {', '.join(keys)}.")
            name = keys[key]
            overrides[name] = _checked(f"Config file {path}: [{section}] {key}", name, value)
    return overrides


def _checked(where: str, name: str, value: object) -> object:
    """``value`` converted to the field's type, or a ConfigError that says what is expected.

    Strings are never echoed back: a key pasted into the wrong place must not end up on screen.
    """
    default = getattr(Config(), name)
    expected = type(default) if default is not None else str
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {_shown(value)}.")
        return value
    if expected in (int, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and expected is int and isinstance(value, float):
            ok = value.is_integer()
        low, high = _NUMBER_RANGES.get(name, (-math.inf, math.inf))
        if not ok or not math.isfinite(value) or not low <= value <= high:  # type: ignore[arg-type]
            kind = "a whole number" if expected is int else "a number"
            raise ConfigError(f"{where} must be {kind} from {low:g} to {high:g}, not {_shown(value)}.")
        return expected(value)  # type: ignore[call-arg]
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string in quotes, not {_shown(value)}.")
    if "\x00" in value:
        raise ConfigError(f"{where} contains a NUL character.")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"{where} must be one of {', '.join(map(repr, _CHOICES[name]))}.")
    if name == "base_url" and not re.match(r"https?://[^\s/]+", value):
        raise ConfigError(f"{where} must be an http:// or https:// address, e.g. http://127.0.0.1:8080/v1.")
    if name == "api_key_env" and not _ENV_NAME.fullmatch(value):
        raise ConfigError(
            f"{where} must be the NAME of an environment variable (letters, digits, _), e.g. DOPPEL_API_KEY; "
            "the key itself goes in that variable, never in this file."
        )
    if name in ("persona_name", "system_prompt") and not value.strip():
        raise ConfigError(f"{where} must not be empty.")
    return value


def _shown(value: object) -> str:
    """A short description of a bad value: numbers and booleans as they are, anything else by type."""
    if isinstance(value, bool | int | float):
        return repr(value)
    return {str: "a string", list: "a list", dict: "a section"}.get(type(value), type(value).__name__)
