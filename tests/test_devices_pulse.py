"""The real sounddevice path: a PulseAudio daemon with null sinks as virtual mic and speaker.

The user's question is played into one null sink whose monitor is the
default source (the "microphone"); Doppel's speaker is a second null sink,
recorded through its monitor.  Both run at real-time pace, as devices do.
"""

from __future__ import annotations

import os
import shutil
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

PA_CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=user_voice sink_properties=device.description=user_voice
load-module module-null-sink sink_name=replica_out sink_properties=device.description=replica_out
set-default-sink replica_out
set-default-source user_voice.monitor
"""


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not shutil.which("pulseaudio") or not shutil.which("paplay"):
        pytest.skip("pulseaudio/pulseaudio-utils not installed (packaging/setup.sh installs them as root)")
    folder = tmp_path_factory.mktemp("pulse")
    socket = folder / "native"
    (folder / "default.pa").write_text(PA_CONFIG.format(socket=socket))
    env = {**os.environ, "PULSE_SERVER": f"unix:{socket}", "HOME": str(folder), "XDG_RUNTIME_DIR": str(folder)}
    daemon = subprocess.Popen(
        [
            "pulseaudio",
            "-n",
            "-F",
            str(folder / "default.pa"),
            "--exit-idle-time=-1",
            "--daemonize=no",
            "--use-pid-file=no",
            "--system=no",
            "--disallow-exit",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not socket.exists():
        daemon.kill()
        pytest.skip("pulseaudio did not start here")
    saved = {k: os.environ.get(k) for k in ("PULSE_SERVER",)}
    os.environ["PULSE_SERVER"] = env["PULSE_SERVER"]
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    daemon.terminate()
    daemon.wait(5)


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
