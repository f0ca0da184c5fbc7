"""Echo cancellation on the real Piper voice through a simulated room, judged by the real VAD.

The replica's ~30 s reply is played through a room (delay, early reflections,
decaying tail, mic noise) into the microphone. Without a canceller the VAD
hears the replica as a user and would cut it off; with WebRTC AEC3 it hears
nothing until the user really speaks.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from app.core.audio_io import SOURCE_RATE
from app.core.conversation import EARLY_VOICE_MS
from app.core.vad import TurnDetectorSettings
from app.duplex.aec import EchoCanceller
from app.duplex.bench import REPLY
from app.duplex.delay import estimate_delay
from app.duplex.room import Recording, Room, drive, erle_db, record, vad_onsets

pytest.importorskip("livekit.rtc", reason="the WebRTC APM binding (pip install livekit) is not installed")

ROOM = Room(delay_ms=60.0, rt60_ms=300.0, gain=0.2)  # echo ~3 dB below the user's voice at the mic
SPEAKER_LEAD_MS = 20.0  # the output device's buffer: playout is known a little before it is heard
QUESTION_AT_S = 7.3


@pytest.fixture(scope="module")
def reply(tts) -> np.ndarray:
    """~30 s of the replica speaking, at the voice's own rate (what the speaker sink plays)."""
    audio = np.concatenate([c.audio for text in REPLY for c in tts.synthesize(text)])
    assert len(audio) / tts.sample_rate > 28.0
    return audio


@pytest.fixture(scope="module")
def question(speak16k) -> np.ndarray:
    return speak16k("Sorry, but what time is it right now?")


@pytest.fixture(scope="module")
def settings(config) -> TurnDetectorSettings:
    return TurnDetectorSettings(silence_ms=config.silence_ms, min_speech_ms=config.min_speech_ms)


def cancel(rec: Recording, rate: int, **drive_kw) -> tuple[EchoCanceller, list[tuple[np.ndarray, int]]]:
    """Run the canceller over the whole recording, as the conversation's VAD thread would."""
    aec = EchoCanceller(rate)
    frames = [
        (aec.process(f, t), t) for f, t in drive(rec, rate, [aec.tap], speaker_lead_ms=SPEAKER_LEAD_MS, **drive_kw)
    ]
    return aec, frames


def cleaned_signal(frames: list[tuple[np.ndarray, int]], aec: EchoCanceller) -> np.ndarray:
    """The filter's output re-aligned with the mic (it lags by one frame)."""
    shift = round(aec.latency_ns * SOURCE_RATE / 1e9)
    return np.concatenate([f for f, _ in frames])[shift:]


def seconds(onsets: list[int], rec: Recording) -> list[float]:
    return [round((t - rec.t0_ns) / 1e9, 2) for t in onsets]


def test_echo_without_cancellation_causes_false_barge_ins(reply, tts, settings) -> None:
    rec = record(reply, tts.sample_rate, ROOM)
    onsets = vad_onsets(drive(rec, tts.sample_rate, []), settings)
    print(f"\nno AEC: {len(onsets)} false onsets at {seconds(onsets, rec)} s")
    assert len(onsets) >= 2  # the replica would interrupt itself again and again


def test_cancelled_echo_causes_no_false_barge_in_and_erle(reply, tts, settings) -> None:
    rec = record(reply, tts.sample_rate, ROOM)
    aec, frames = cancel(rec, tts.sample_rate)
    early: list[int] = []
    onsets = vad_onsets(frames, replace(settings, early_speech_ms=EARLY_VOICE_MS), early)
    out = cleaned_signal(frames, aec)
    mic = rec.mic[: len(out)]
    converged = 2 * SOURCE_RATE
    erle_all, erle_after = erle_db(mic, out), erle_db(mic[converged:], out[converged:])
    ceiling = erle_db(mic, mic - rec.echo[: len(mic)])  # the room's noise is not echo and stays
    print(
        f"\nAEC: {len(onsets)} false onsets, {len(early)} false mutes at {seconds(early, rec)} s; "
        f"ERLE {erle_all:.1f}, {erle_after:.1f} dB after 2 s, ceiling {ceiling:.1f}"
    )
    assert onsets == [], seconds(onsets, rec)
    assert erle_all > 20.0 and erle_after > ceiling - 3.0  # the echo is gone down to the mic's noise floor
    assert aec.starved_chunks == 0


def test_user_question_still_barges_in_through_the_canceller(reply, tts, question, settings) -> None:
    rec = record(reply, tts.sample_rate, ROOM, [(QUESTION_AT_S, question)])
    _, frames = cancel(rec, tts.sample_rate)
    onsets = seconds(vad_onsets(frames, settings), rec)
    print(f"\nAEC with a question at {QUESTION_AT_S} s: onsets at {onsets} s")
    assert onsets, "the user's question never became an onset"
    assert QUESTION_AT_S <= onsets[0] <= QUESTION_AT_S + 0.6  # no earlier false onset, and a prompt true one


def test_misreported_device_latency_is_measured_and_corrected(reply, tts) -> None:
    """The mic stamps its frames 120 ms late: the echo sits 180 ms behind the stamps, which GCC-PHAT finds."""
    rec = record(reply, tts.sample_rate, ROOM)
    rec.mic = rec.mic[: 12 * SOURCE_RATE]
    aec, frames = cancel(rec, tts.sample_rate, stamp_error_ms=120.0)
    assert aec.delay_ms == pytest.approx(ROOM.delay_ms + 120.0, abs=2.0)
    out = cleaned_signal(frames, aec)
    late = slice(5 * SOURCE_RATE, len(out))
    assert erle_db(rec.mic[late], out[late]) > 25.0


def test_a_steady_echo_delay_is_measured_less_often(reply, tts) -> None:
    """Each estimate is a burst of FFTs beside the LLM: once two agree, the next waits 6 s, not 2 s."""
    rec = record(reply, tts.sample_rate, ROOM)
    aec, _ = cancel(rec, tts.sample_rate)
    heard_s = len(rec.mic) / SOURCE_RATE
    lags = [round(lag) for lag, strength in aec.delay_estimates if strength >= 0.12]
    assert len(lags) >= 3 and max(lags) - min(lags) <= 2, aec.delay_estimates  # the room's delay, every time
    every_2_s = (heard_s - 1.5) // 2.0 + 1
    assert len(aec.delay_estimates) <= 1 + every_2_s / 2, (len(aec.delay_estimates), heard_s)


def test_estimate_delay_finds_a_known_lag() -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(SOURCE_RATE * 2).astype(np.float32)
    lag = int(0.0734 * SOURCE_RATE)
    mic = np.concatenate([np.zeros(lag), 0.3 * ref])[: len(ref)] + 0.05 * rng.standard_normal(len(ref))
    ms, strength = estimate_delay(ref, mic, SOURCE_RATE)
    assert ms == pytest.approx(73.4, abs=0.1) and strength > 0.5
    ms, strength = estimate_delay(ref, rng.standard_normal(len(ref)), SOURCE_RATE)
    assert strength < 0.1  # no echo path: weak peak, so the canceller ignores the estimate


def test_a_quiet_speaker_skips_the_canceller_and_the_next_reply_is_cancelled_at_once(reply, tts, settings) -> None:
    """Between replies nothing can echo: the mic passes through untouched, and AEC3 picks up where it was.

    Against a canceller run on every chunk over the same recording: the reply
    after a 3 s gap loses no echo cancellation and makes no false onset.
    """
    rate = tts.sample_rate
    gap_s, first_s, second_s = 3.0, 8.0, 6.0
    played = np.concatenate(
        [reply[: int(first_s * rate)], np.zeros(int(gap_s * rate), np.float32), reply[: int(second_s * rate)]]
    )
    rec = record(played, rate, ROOM)
    runs = {}
    for skip in (False, True):
        aec = EchoCanceller(rate, skip_when_quiet=skip)
        feed = drive(rec, rate, [aec.tap], speaker_lead_ms=SPEAKER_LEAD_MS)
        frames = [(aec.process(f, t), t) for f, t in feed]
        runs[skip] = (aec, frames, cleaned_signal(frames, aec))
    aec, frames, out = runs[True]
    quiet = slice(int((first_s + 0.6) * SOURCE_RATE), int((first_s + gap_s - 0.1) * SOURCE_RATE))
    np.testing.assert_allclose(out[quiet], rec.mic[quiet], atol=1e-6)  # passed through as it came
    assert aec.quiet_chunks >= (gap_s - 0.7) * 100 and runs[False][0].quiet_chunks == 0
    after = slice(int((first_s + gap_s) * SOURCE_RATE), int((first_s + gap_s + 1.0) * SOURCE_RATE))
    erle_skip = erle_db(rec.mic[after], out[after])
    erle_always = erle_db(rec.mic[after], runs[False][2][after])
    print(f"\nfirst second after a {gap_s:.0f} s gap: ERLE {erle_skip:.1f} dB skipped, {erle_always:.1f} dB always run")
    assert erle_skip > 20.0 and erle_skip > erle_always - 2.0
    assert vad_onsets(frames, settings) == [] and aec.starved_chunks == 0
