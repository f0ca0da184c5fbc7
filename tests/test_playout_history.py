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
