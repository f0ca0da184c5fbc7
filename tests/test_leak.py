"""The echo-leak detector: the replica's own voice in the canceller's output is caught, the user's is not."""

from __future__ import annotations

import numpy as np

from app.duplex.leak import LeakDetector

CHUNK = 160  # 10 ms at 16 kHz, as the canceller feeds it


def _voice(seconds: float, seed: int) -> np.ndarray:
    """Noise shaped by a syllable-rate envelope: loud enough, and unlike any other seed's."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    envelope = 0.5 + 0.5 * np.sin(np.arange(n) * 2 * np.pi * 4 / 16000)
    return (rng.standard_normal(n) * 0.1 * envelope).astype(np.float32)


def _feed(detector: LeakDetector, ref: np.ndarray, out: np.ndarray) -> list[bool]:
    return [detector.push(ref[i : i + CHUNK], out[i : i + CHUNK]) for i in range(0, len(ref) - CHUNK + 1, CHUNK)]


def test_a_delayed_copy_of_the_reference_is_a_leak() -> None:
    ref = _voice(1.0, seed=1)
    delay = 1600  # 100 ms of echo path
    out = 0.6 * np.concatenate([np.zeros(delay, np.float32), ref[:-delay]])
    detector = LeakDetector()
    assert any(_feed(detector, ref, out)) and detector.last_score > 0.5


def test_the_users_own_voice_is_not_a_leak_whether_or_not_the_replica_plays() -> None:
    user = _voice(1.0, seed=2)
    over_the_replica = LeakDetector()
    assert not any(_feed(over_the_replica, _voice(1.0, seed=3), user))  # unrelated to what plays
    nothing_playing = LeakDetector()
    assert not any(_feed(nothing_playing, np.zeros_like(user), user))
    assert nothing_playing.last_score == 0.0  # nothing played: not even scored


def _feed_with_mic(detector: LeakDetector, ref: np.ndarray, mic: np.ndarray, out: np.ndarray) -> list[bool]:
    return [
        detector.push(ref[i : i + CHUNK], out[i : i + CHUNK], mic[i : i + CHUNK])
        for i in range(0, len(ref) - CHUNK + 1, CHUNK)
    ]


def _reshaped(signal: np.ndarray, seed: int) -> np.ndarray:
    """Each 10 ms keeps its spectrum's magnitude and gets random phases: as loud, no longer the same waveform."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(signal)
    for i in range(0, len(signal) - CHUNK + 1, CHUNK):
        spectrum = np.abs(np.fft.rfft(signal[i : i + CHUNK]))
        phases = np.exp(2j * np.pi * rng.random(len(spectrum)))
        out[i : i + CHUNK] = np.fft.irfft(spectrum * phases, CHUNK)
    return out


def test_echo_a_misaligned_canceller_reshapes_and_lets_through_is_a_leak() -> None:
    """Seen on PulseAudio after its loopback jumped: the output barely correlated with the reference."""
    ref = _voice(1.0, seed=4)
    delay = 1040  # 65 ms
    mic = 0.8 * np.concatenate([np.zeros(delay, np.float32), ref[:-delay]])
    out = _reshaped(mic, seed=5)
    detector = LeakDetector()
    flagged = _feed_with_mic(detector, ref, mic, out)
    assert detector.last_score < detector.threshold  # the output alone does not give it away
    assert any(flagged) and detector.echo_alone_chunks > 0


def test_the_user_talking_over_the_replica_is_not_a_leak_even_where_the_canceller_passes_it() -> None:
    ref = _voice(1.0, seed=6)
    user = _voice(1.0, seed=7)
    delay = 1040
    echo = 0.3 * np.concatenate([np.zeros(delay, np.float32), ref[:-delay]])
    detector = LeakDetector()
    flagged = _feed_with_mic(detector, ref, user + echo, user + 0.05 * echo)
    assert not any(flagged)
    assert 0.0 < detector.last_mic_score < detector.echo_alone  # scored, and the user's voice dominated
