"""Building blocks of the rig's warp map: rectangles of the frame, per-column ramps, curve lookups.

A frame has a few milliseconds of CPU, shared with the LLM, and the arrays
here are small (a mouth is ~200x200 pixels, an eye ~60x60): numpy's cost per
call matters as much as its cost per pixel. So these work on whole tables at
once and compute only the rows and columns a ramp actually changes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from app.replica.face import FRAME_SIZE


class Roi:
    """A rectangle of the frame with its pixel-centre coordinates."""

    def __init__(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.x0, self.y0 = max(int(x0), 0), max(int(y0), 0)
        self.x1, self.y1 = min(int(np.ceil(x1)), FRAME_SIZE), min(int(np.ceil(y1)), FRAME_SIZE)
        self.slice = (slice(self.y0, self.y1), slice(self.x0, self.x1))
        self.cols = np.arange(self.x0, self.x1, dtype=np.float64)
        self.rows = np.arange(self.y0, self.y1, dtype=np.float64)


class Patch(NamedTuple):
    """A displacement added to the warp map over a rectangle: the source pixel is this much further along."""

    y0: int  # top row in the frame
    x0: int  # left column in the frame
    axis: int  # 0: x, 1: y
    d: np.ndarray  # (rows, cols) float32


def unit(x: np.ndarray) -> np.ndarray:
    """``x`` clamped to [0, 1]: np.clip without its per-call argument handling (dozens of calls a frame)."""
    out = np.maximum(x, 0.0)
    return np.minimum(out, 1.0, out=out)


def sample(
    table: np.ndarray, pos: np.ndarray, first: int | np.ndarray = 0, last: int | np.ndarray | None = None
) -> np.ndarray:
    """Each row of ``table`` at the fractional column indices ``pos``, constant beyond ``first`` and ``last``.

    np.interp for all rows at once. ``first``/``last`` (default: the table's ends) may be per-column
    arrays, so one table can hold several curves side by side. ``pos`` is clamped in place.
    """
    last = table.shape[1] - 1 if last is None else last
    np.maximum(pos, first, out=pos)
    np.minimum(pos, last, out=pos)
    i = pos.astype(np.intp)
    np.minimum(i, last - 1, out=i)  # at ``last`` itself: the segment before it, all the way along
    lo = table.take(i, axis=1)
    hi = table.take(i + 1, axis=1)
    hi -= lo
    hi *= pos - i
    hi += lo
    return hi


def ramps(y: np.ndarray, k_out: np.ndarray, k_src: np.ndarray) -> np.ndarray:
    """Source row minus output row (float32), piecewise linear between per-column knots.

    ``y`` is (rows, 1), one row apart; knots are (k, cols) with identical
    first and last knots (no shift outside them). A zero-length output
    segment is a jump in the source: that is how lips close over teeth and a
    lid covers an eye.
    """
    y32 = y.astype(np.float32)
    n, y0 = y.shape[0], float(y[0, 0])
    dy = np.zeros((n, k_out.shape[1]), np.float32)
    d_out = k_out[1:] - k_out[:-1]
    stretch = (k_src[1:] - k_src[:-1]) - d_out
    np.maximum(d_out, 1e-3, out=d_out)
    inv = 1.0 / d_out
    # Each segment touches only the columns it stretches, and needs the clip only on the rows of its
    # ramp: above the ramp it adds nothing, below it the whole stretch. Python numbers from here on:
    # a numpy reduction per segment would cost more than the arithmetic it saves.
    moved = stretch != 0.0
    first, last = moved.argmax(axis=1).tolist(), (moved.shape[1] - moved[:, ::-1].argmax(axis=1)).tolist()
    starts = np.where(moved, k_out[:-1], np.inf).min(axis=1).tolist()
    ends = np.where(moved, k_out[:-1] + d_out, -np.inf).max(axis=1).tolist()
    below = []  # (first row past the ramp, segment): where its whole stretch applies
    for i, a in enumerate(starts):
        if a == np.inf:
            continue  # a segment that is not stretched adds nothing
        r0 = min(max(int(a - y0), 0), n)  # a row to spare either side: there the ramp is exactly 0 or 1
        r1 = min(max(int(np.ceil(ends[i] - y0)) + 1, r0), n)
        c = slice(first[i], last[i])
        ramp = y32[r0:r1] - k_out[i, c]
        ramp *= inv[i, c]
        np.maximum(ramp, 0.0, out=ramp)
        np.minimum(ramp, 1.0, out=ramp)
        ramp *= stretch[i, c]
        dy[r0:r1, c] += ramp
        below.append((r1, i))
    # The rows past each ramp take its stretch: added once per run of rows between ramp ends, not once per
    # segment over every row below it (the stretches cancel out below the last ramp).
    carry = np.zeros(k_out.shape[1], np.float32)
    below.sort()
    for j, (r1, i) in enumerate(below):
        carry[first[i] : last[i]] += stretch[i, first[i] : last[i]]
        end = below[j + 1][0] if j + 1 < len(below) else n
        if end > r1:
            dy[r1:end] += carry
    return dy
