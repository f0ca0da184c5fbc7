"""Idle life: blinks, breathing, small head motion and eye saccades.

Everything is a pure function of time and a seed (no state, no wall clock), so
a frame at time t looks the same however often or in whatever order it is
rendered, and tests can jump to any instant without sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BLINK_WINDOW_S = 4.0  # one blink per window, at 1..3 s into it: gaps of 2..6 s
_CLOSE_S, _HOLD_S, _OPEN_S = 0.075, 0.045, 0.14
BLINK_S = _CLOSE_S + _HOLD_S + _OPEN_S  # a whole blink
_MASK = (1 << 64) - 1


def _hash01(seed: int, key: int, salt: int) -> float:
    """splitmix64 of (seed, key, salt) as a float in [0, 1)."""
    z = (seed * 0x9E3779B97F4A7C15 + key * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


@dataclass(frozen=True)
class IdlePose:
    blink: float  # 0 open .. 1 shut
    head_rot_deg: float
    head_dx: float  # in inter-ocular distances
    head_dy: float
    breath: float  # -1 .. 1, chest up when positive
    saccade_x: float  # added to the gaze target, -1..1 units
    saccade_y: float


class IdleMotion:
    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._phases = [2 * math.pi * _hash01(seed, i, 7) for i in range(8)]

    def blink_times(self, t0_s: float, t1_s: float) -> list[float]:
        """Blink start times in [t0, t1)."""
        first, last = math.floor(t0_s / BLINK_WINDOW_S) - 1, math.floor(t1_s / BLINK_WINDOW_S)
        times = [k * BLINK_WINDOW_S + 1.0 + 2.0 * _hash01(self.seed, k, 1) for k in range(first, last + 1)]
        return [t for t in times if t0_s <= t < t1_s]

    def blink(self, t_s: float) -> float:
        total = _CLOSE_S + _HOLD_S + _OPEN_S
        return max((blink_amount(t_s - start) for start in self.blink_times(t_s - total, t_s + 1e-9)), default=0.0)

    def pose(self, t_ns: int, energy: float = 0.0) -> IdlePose:
        """Idle pose at t; ``energy`` (0..1, speech loudness) adds a little nodding."""
        t = t_ns / 1e9
        p = self._phases
        rot = 0.7 * math.sin(2 * math.pi * 0.083 * t + p[0]) + 0.35 * math.sin(2 * math.pi * 0.21 * t + p[1])
        dx = 0.010 * math.sin(2 * math.pi * 0.061 * t + p[2]) + 0.006 * math.sin(2 * math.pi * 0.17 * t + p[3])
        dy = 0.006 * math.sin(2 * math.pi * 0.097 * t + p[4]) + 0.012 * energy
        breath = math.sin(2 * math.pi * t / 4.3 + p[5])
        sx, sy = self._saccade(t)
        return IdlePose(self.blink(t), rot, dx, dy, breath, sx, sy)

    def _saccade(self, t_s: float) -> tuple[float, float]:
        """Small fixation shifts every ~1.5 s, each a quick 60 ms move."""
        period = 1.5
        k = math.floor(t_s / period)

        def target(i: int) -> tuple[float, float]:
            return 0.18 * (_hash01(self.seed, i, 3) - 0.5), 0.1 * (_hash01(self.seed, i, 4) - 0.5)

        (x0, y0), (x1, y1) = target(k - 1), target(k)
        f = _ease(min((t_s - k * period) / 0.06, 1.0))
        return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f


def blink_amount(dt: float) -> float:
    """How shut the lids are ``dt`` seconds after a blink began (0 outside the blink)."""
    if dt < 0.0:
        return 0.0
    if dt < _CLOSE_S:
        return _ease(dt / _CLOSE_S)
    if dt < _CLOSE_S + _HOLD_S:
        return 1.0
    if dt < _CLOSE_S + _HOLD_S + _OPEN_S:
        return 1.0 - _ease((dt - _CLOSE_S - _HOLD_S) / _OPEN_S)
    return 0.0


def _ease(f: float) -> float:
    f = min(max(f, 0.0), 1.0)
    return f * f * (3.0 - 2.0 * f)
