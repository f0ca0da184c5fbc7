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
