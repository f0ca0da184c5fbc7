"""Shared fixtures: each real model is loaded once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.config import Config


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Defaults, with logs in a temporary folder (never the user's data dir).

    The LLM runs as shipped: which file a machine picks (app/engines/llm_pick.py) depends on its CPU,
    and the tests' greedy replies must not; tests/test_llm_pick.py drives the picker itself.
    """
    return Config(log_dir=str(tmp_path_factory.mktemp("logs")), pick_llm_file=False)


@pytest.fixture(scope="session")
def whisper_asr(config: Config):
    from dataclasses import replace

    from app.compose import load_asr

    return load_asr(replace(config, asr_engine="whisper"))


@pytest.fixture(scope="session")
def moonshine_asr(config: Config):
    from dataclasses import replace

    from app.compose import load_asr

    return load_asr(replace(config, asr_engine="moonshine"))


@pytest.fixture(scope="session")
def asr(config: Config, request: pytest.FixtureRequest):
    """The default engine (``Config.asr_engine``), shared with its own fixture so it loads once."""
    return request.getfixturevalue(f"{config.asr_engine}_asr")


@pytest.fixture(scope="session")
def llm(config: Config):
    from app.compose import load_local_llm

    return load_local_llm(config)


@pytest.fixture(scope="session")
def tts(config: Config):
    from app.compose import load_tts

    # Piper samples prosody noise: with it on, a test phrase is heard differently run to run
    # ("No, of Italy." once came back "no, a vitally"), so test speech is made repeatable.
    return load_tts(config, deterministic=True)


@pytest.fixture(scope="session")
def speak16k(tts) -> Iterator:
    """Synthesize text with the real Piper voice, resampled to 16 kHz for ASR/VAD."""
    from app.core.audio import resample

    def speak(text: str) -> np.ndarray:
        audio = np.concatenate([c.audio for c in tts.synthesize(text)])
        return resample(audio, tts.sample_rate, 16_000)

    yield speak


@pytest.fixture(scope="session")
def engines(asr, llm, tts):
    from app.compose import Engines

    return Engines(asr=asr, llm=llm, tts=tts, load_s={})


def trim_silence(audio: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """Cut leading/trailing near-silence (Piper pads its output)."""
    loud = np.flatnonzero(np.abs(audio) > floor)
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio[:0]
