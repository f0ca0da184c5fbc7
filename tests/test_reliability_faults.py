"""Faults: models cut short, and sound devices that vanish mid-reply; each is explained and the rest keeps working.

Covered elsewhere: missing model files and files that are not models
(test_registry_and_cli.py), no devices at all and a microphone that stops
(test_ui_window.py), a remote LLM that is down, slow or misbehaving
(test_llm_openai.py, test_openai_server.py), a full disk and a speaker that
stops in the window (test_reliability_window.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.compose import load_asr, load_local_llm, load_tts
from app.core import events as ev
from app.core.conversation import Conversation
from app.core.history import JsonlLog
from app.model_registry import ModelError, resolve
from tests.pulse import MIC_AND_SPEAKER, pulse_daemon


def test_models_cut_short_are_refused_with_a_message(config, tmp_path: Path) -> None:
    llm = tmp_path / "cut.gguf"
    llm.write_bytes(resolve("llm").read_bytes()[:2_000_000])  # the magic is right, the rest is missing
    voice = tmp_path / "cut.onnx"
    voice.write_bytes(resolve("voice").read_bytes()[:200_000])
    shutil.copy(f"{resolve('voice')}.json", f"{voice}.json")
    asr = tmp_path / "asr"
    shutil.copytree(resolve("asr"), asr)
    (asr / "model.bin").write_bytes((asr / "model.bin").read_bytes()[:1_000_000])
    cases = (
        (load_local_llm, replace(config, llm_model=str(llm)), "cut.gguf"),
        (load_local_llm, replace(config, llm_model=str(llm), requantize_llm=False), "cut.gguf"),
        (load_tts, replace(config, voice=str(voice)), "cut.onnx"),
        (load_asr, replace(config, asr_model=str(asr)), str(asr)),
    )
    for load, cfg, name in cases:
        with pytest.raises(ModelError) as info:
            load(cfg)
        message = str(info.value)
        assert name in message and "could not be loaded" in message and "pass --" in message, message


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    folder = tmp_path / "pulse"
    folder.mkdir()
    with pulse_daemon(folder, MIC_AND_SPEAKER) as env:
        yield env, folder


def _daemon_pid(folder: Path) -> int:
    """The PulseAudio daemon this test started (its command line names the test's folder)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"pulseaudio") and str(folder).encode() in b" ".join(cmdline):
                return int(entry.name)
    raise AssertionError("the test's PulseAudio daemon is not running")


def test_sound_devices_vanishing_mid_reply(pulse, config, engines, tmp_path: Path, monkeypatch) -> None:
    """The sound server dies while the replica speaks: both devices report it, the turn ends, text goes on."""
    from app.devices.sound import MicrophoneSource, SpeakerSink

    _env, folder = pulse
    monkeypatch.setattr(engines.llm, "max_tokens", 24)
    problems: list[str] = []
    conversation = Conversation(
        replace(config, max_reply_tokens=24),
        engines,
        source=MicrophoneSource("pulse", on_error=problems.append),
        sink=SpeakerSink(engines.tts.sample_rate, "pulse", on_error=problems.append),
        log=JsonlLog(tmp_path / "turns.jsonl"),
    )
    events: list[ev.Event] = []
    conversation.bus.subscribe(events.append)
    before = {t.ident for t in threading.enumerate()}
    conversation.start()
    try:
        conversation.say("Tell me about the sea.")
        deadline = time.monotonic() + 60
        while not any(isinstance(e, ev.AudioPlayed) for e in events) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(isinstance(e, ev.AudioPlayed) for e in events), "the reply was playing"
        os.kill(_daemon_pid(folder), signal.SIGKILL)  # unplugged: every stream of that server is gone
        assert conversation.wait_idle(60), "the turn ended although nobody can hear it"
        assert any("speaker stopped" in p for p in problems) and any("microphone stopped" in p for p in problems)
        conversation.say("Are you still there?")
        assert conversation.wait_idle(60)
    finally:
        assert conversation.shutdown()
    ended = [e for e in events if isinstance(e, ev.TurnEnded)]
    replies = [e.text for e in events if isinstance(e, ev.ReplyText)]
    assert len(ended) == 2 and all(replies), replies
    time.sleep(0.3)
    leftover = [
        t.name
        for t in threading.enumerate()
        if t.ident not in before and t.is_alive() and not isinstance(t, threading._DummyThread)
    ]
    assert not leftover, leftover
