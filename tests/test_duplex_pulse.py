"""Echo cancellation on real audio devices: PortAudio through a PulseAudio daemon.

The replica plays through ``SpeakerSink`` into a null sink; a loopback module
carries that into a "room" null sink, whose monitor is the microphone
``MicrophoneSource`` records. Timestamps come from PortAudio's DAC/ADC times,
as on a real machine, so this checks what the simulated room cannot: that the
canceller lines up real device clocks (and their start-up quirks).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from app.core.audio import write_wav
from app.core.audio_io import PlayTag
from app.core.vad import TurnDetectorSettings
from app.duplex import webrtc_available
from app.duplex.aec import EchoCanceller
from app.duplex.room import erle_db, vad_onsets
from tests.pulse import pulse_daemon

PA_CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=replica_out
load-module module-null-sink sink_name=room
load-module module-loopback source=replica_out.monitor sink=room latency_msec=60 adjust_time=0
set-default-sink replica_out
set-default-source room.monitor
"""
REPLY = "The knight rode along the cliffs every morning. He watched the ships come home, one by one."
QUESTION_AFTER_S = 4.0  # after the reply starts


@pytest.fixture(scope="module")
def room_pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not webrtc_available():
        pytest.skip("the WebRTC APM binding (livekit) is not installed")
    with pulse_daemon(tmp_path_factory.mktemp("pulse-room"), PA_CONFIG) as env:
        yield env


class _NoListener:
    def on_chunk_started(self, tag: PlayTag, t_ns: int) -> None: ...

    def on_chunk_finished(self, tag: PlayTag, t_ns: int) -> None: ...


def test_real_devices_echo_is_cancelled_and_the_user_still_heard(room_pulse, tts, speak16k, config, tmp_path) -> None:
    from app.devices.sound import MicrophoneSource, SpeakerSink

    reply = 0.5 * np.concatenate([c.audio for c in tts.synthesize(REPLY)])
    question = tmp_path / "question.wav"
    write_wav(question, speak16k("Sorry, what time is it?"), 16_000)
    sink = SpeakerSink(tts.sample_rate, "pulse")
    aec = EchoCanceller(tts.sample_rate)
    sink.buffer.taps.append(aec.tap)
    raw: list[tuple[np.ndarray, int]] = []
    cleaned: list[tuple[np.ndarray, int]] = []
    lock = threading.Lock()

    def on_frames(frame: np.ndarray, t_ns: int) -> None:
        with lock:
            raw.append((frame, t_ns))
            cleaned.append((aec.process(frame, t_ns), t_ns))

    mic = MicrophoneSource("pulse")
    sink.start(_NoListener())
    mic.start(on_frames)
    try:
        deadline = time.monotonic() + 5
        while len(raw) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        reply_at = sink.play(reply, PlayTag(1, 0))
        time.sleep(QUESTION_AFTER_S)
        question_at = time.perf_counter_ns()
        subprocess.run(["paplay", "--device=room", str(question)], env=room_pulse, check=True, timeout=20)
        time.sleep(max(0.5, len(reply) / tts.sample_rate - QUESTION_AFTER_S - 1.5))
    finally:
        mic.stop()
        sink.stop()
    settings = TurnDetectorSettings(silence_ms=config.silence_ms, min_speech_ms=config.min_speech_ms)
    with lock:
        raw_onsets = [t for t in vad_onsets(raw, settings) if t < question_at]
        aec_onsets = vad_onsets(cleaned, settings)
        mic_all = np.concatenate([f for f, t in raw if reply_at + 1.5e9 < t < question_at])
        out_all = np.concatenate([f for f, t in cleaned if reply_at + 1.5e9 < t < question_at])
    false = [round((t - reply_at) / 1e9, 2) for t in aec_onsets if t < question_at - 100_000_000]
    heard = [round((t - question_at) / 1e9, 2) for t in aec_onsets if t >= question_at - 100_000_000]
    erle = erle_db(mic_all, out_all)
    print(
        f"\nreal devices: raw {len(raw_onsets)} false onsets; AEC false onsets at {false} s after the reply began, "
        f"question onsets at {heard} s; ERLE {erle:.1f} dB; measured lag {aec.delay_estimates[:3]}; "
        f"ducked {aec.warmup_ms} ms; reanchors {aec._ref.reanchors}"
    )
    assert raw_onsets  # without the canceller the replica's first words would already cut it off
    assert erle > 6.0  # 11-41 dB over runs: the loopback jumps 10-20 ms mid-reply and AEC3 re-converges
    assert not false, false
    assert heard and heard[0] < 2.0, heard
