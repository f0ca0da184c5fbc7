"""The echo canceller's reference: what the speaker played, read back by when it was heard."""

from __future__ import annotations

import numpy as np
import soxr

from app.core.audio_io import SOURCE_RATE
from app.duplex.playout import KEEP_S, RESAMPLE_QUALITY, PlayoutHistory

SINK_RATE = 22050
BLOCK = 110  # 5 ms, as the real-time stand-in speaker taps


def test_reads_match_the_whole_resampled_stream_across_the_ring_and_forget_beyond_it() -> None:
    rng = np.random.default_rng(7)
    history = PlayoutHistory(SINK_RATE)
    oracle = soxr.ResampleStream(SINK_RATE, SOURCE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    everything: list[np.ndarray] = []
    t0 = 1_000_000_000
    for i in range(int(8.0 * SINK_RATE / BLOCK)):  # 8 s: the 5 s ring wraps more than once
        block = rng.standard_normal(BLOCK).astype(np.float32) * 0.1
        history.tap(block, t0 + int(i * BLOCK * 1e9 / SINK_RATE))
        everything.append(oracle.resample_chunk(block))
    stream = np.concatenate(everything)
    for start_s, seconds in ((7.5, 0.2), (3.1, 0.01), (2.9, 0.3), (7.9, 0.5), (1.0, 0.1)):
        first, n = round(start_s * SOURCE_RATE), round(seconds * SOURCE_RATE)
        got, known = history.read(t0 + int(first * 1e9 / SOURCE_RATE), n)
        want = np.zeros(n, np.float32)
        kept_from = len(stream) - int(KEEP_S * SOURCE_RATE)
        lo, hi = max(first, kept_from), min(first + n, len(stream))
        if hi > lo:
            want[lo - first : hi - first] = stream[lo:hi]
        assert np.array_equal(got, want), (start_s, seconds)
        assert known == (first + n <= len(stream))
    assert history.reanchors == 0


def test_quiet_only_after_the_last_audible_sample_and_only_as_far_as_the_playout_is_known() -> None:
    history = PlayoutHistory(SINK_RATE)
    t0 = 2_000_000_000
    block_ns = BLOCK * 1e9 / SINK_RATE
    loud = np.full(BLOCK, 0.2, np.float32)
    blocks = [loud] * 100 + [np.zeros(BLOCK, np.float32)] * 100  # 0.5 s of sound, then 0.5 s of padding
    assert not history.quiet(t0, t0 + 1)  # nothing known yet
    for i, block in enumerate(blocks):
        history.tap(block, t0 + int(i * block_ns))
    sound_ends = t0 + int(100 * block_ns)
    known_until = t0 + int(200 * block_ns)
    assert not history.quiet(sound_ends - 50_000_000, sound_ends + 100_000_000)  # the sound is in the span
    assert history.quiet(sound_ends + 10_000_000, known_until - 10_000_000)  # only padding since (resampler ~1 ms)
    assert not history.quiet(sound_ends + 10_000_000, known_until + 20_000_000)  # not played that far yet
