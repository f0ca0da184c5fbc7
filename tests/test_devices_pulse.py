"""The real sounddevice path: a PulseAudio daemon with null sinks as virtual mic and speaker.

The user's question is played into one null sink whose monitor is the
default source (the "microphone"); Doppel's speaker is a second null sink,
recorded through its monitor.  Both run at real-time pace, as devices do.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.core import events as ev
from app.core.audio import read_wav, write_wav
from app.core.conversation import Conversation
from app.core.history import JsonlLog
from tests.pulse import MIC_AND_SPEAKER, pulse_daemon


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with pulse_daemon(tmp_path_factory.mktemp("pulse"), MIC_AND_SPEAKER) as env:
        yield env


def test_spoken_turn_through_real_audio_devices(pulse, config, engines, speak16k, tmp_path: Path) -> None:
    from app.devices.sound import MicrophoneSource, SpeakerSink, list_devices

    assert any(name == "pulse" for _, name in list_devices("input"))
    question = tmp_path / "question.wav"
    write_wav(question, np.concatenate([speak16k("What is the capital of Italy?"), np.zeros(8000)]), 16000)
    recording = tmp_path / "speaker.wav"
    recorder = subprocess.Popen(
        ["parec", "--device=replica_out.monitor", "--file-format=wav", "--rate=16000", "--channels=1", str(recording)],
        env=pulse,
    )
    events: list[ev.Event] = []
    lock = threading.Lock()

    def keep(event: ev.Event) -> None:
        with lock:
            events.append(event)

    conversation = Conversation(
        config,
        engines,
        source=MicrophoneSource("pulse"),
        sink=SpeakerSink(engines.tts.sample_rate, "pulse"),
        log=JsonlLog(tmp_path / "log.jsonl"),
    )
    conversation.bus.subscribe(keep)
    conversation.start()
    try:
        time.sleep(0.5)
        subprocess.run(["paplay", "--device=user_voice", str(question)], env=pulse, check=True, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(isinstance(e, ev.TurnEnded) for e in events):
            time.sleep(0.1)
    finally:
        assert conversation.shutdown()
        time.sleep(0.3)
        recorder.terminate()
        recorder.wait(5)
    transcripts = [e.text.lower() for e in events if isinstance(e, ev.TranscriptFinal)]
    assert transcripts and "italy" in transcripts[0], transcripts
    played = [e for e in events if isinstance(e, ev.AudioPlayed)]
    assert played, "the reply reached the speaker"
    ended = [e for e in events if isinstance(e, ev.SpeechEnded)]
    assert played[0].t_ns > ended[0].voice_end_ns
    heard, _ = read_wav(recording, 16000)
    assert np.sqrt(np.mean(heard**2)) > 0.003, "the reply is audible on the speaker's monitor"
