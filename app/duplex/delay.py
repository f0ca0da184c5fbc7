"""How late does the echo arrive? GCC-PHAT cross-correlation of reference and mic.

Device timestamps (PortAudio's DAC/ADC times) are often off by tens of
milliseconds; measuring the lag on the signals themselves is what keeps the
canceller's reference aligned.
"""

from __future__ import annotations

import numpy as np


def estimate_delay(ref: np.ndarray, mic: np.ndarray, rate: int, max_lag_ms: float = 500.0) -> tuple[float, float]:
    """(lag in ms by which ``mic`` trails ``ref``, strength 0..1 of that peak).

    PHAT weighting whitens both spectra, so the direct path wins over the
    reverberant tail and over the voice's own pitch periodicity. The strength
    is the plain normalised correlation at the chosen lag: near 0 when the
    mic holds no echo of ``ref`` at all.
    """
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    mic = np.asarray(mic, dtype=np.float64).reshape(-1)
    n = min(len(ref), len(mic))
    if n == 0:
        return 0.0, 0.0
    ref, mic = ref[:n], mic[:n]
    max_lag = min(n - 1, int(max_lag_ms * rate / 1000))
    # Zero padding to n + max_lag keeps every lag within +-max_lag free of wrap-around, at half the
    # size a full linear correlation (2n) would take: this runs every couple of seconds beside the LLM.
    size = 1 << int(np.ceil(np.log2(n + max_lag)))
    cross = np.fft.rfft(mic, size) * np.conj(np.fft.rfft(ref, size))
    phat = np.fft.irfft(cross / np.maximum(np.abs(cross), 1e-12), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([phat[: max_lag + 1], phat[size - max_lag :]])
    lag = int(lags[int(np.argmax(values))])
    at = float(np.dot(mic[lag:], ref[: n - lag])) if lag >= 0 else float(np.dot(mic[: n + lag], ref[-lag:]))
    norm = float(np.sqrt(np.sum(ref**2) * np.sum(mic**2)))
    strength = abs(at) / norm if norm > 0 else 0.0
    return lag * 1000.0 / rate, strength
