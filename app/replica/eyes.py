"""Lids, irises and brows: their share of the rig's warp map (see app/replica/rig.py).

Each works like the mouth: per image column, a piecewise-linear map from
output rows to source rows between knots on the landmark curves, evaluated in
head-compensated coordinates so the eyes ride along with the head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from app.replica.fields import Patch, Roi, ramps, sample, unit

if TYPE_CHECKING:
    from app.replica.rig import Pose


class _Lids:
    """The lid curves of one eye, from its six landmarks (corner, 2 upper, corner, 2 lower)."""

    def __init__(self, pts: np.ndarray, iod: float) -> None:
        c0, c1 = pts[0], pts[3]
        self.c0, self.c1 = (c0, c1) if c0[0] < c1[0] else (c1, c0)
        self.width = width = self.c1[0] - self.c0[0]
        self.cols = np.arange(int(self.c0[0] - 0.3 * width), int(np.ceil(self.c1[0] + 0.3 * width)), dtype=np.float64)
        cols = self.cols
        inside = (cols > self.c0[0]) & (cols < self.c1[0])
        line = np.interp(cols, [self.c0[0], self.c1[0]], [self.c0[1], self.c1[1]])
        up = np.polyfit(pts[[0, 1, 2, 3], 0], pts[[0, 1, 2, 3], 1], 3)
        lo = np.polyfit(pts[[0, 5, 4, 3], 0], pts[[0, 5, 4, 3], 1], 3)
        self.up = np.where(inside, np.minimum(np.polyval(up, cols), line), line)
        self.lo = np.where(inside, np.maximum(np.polyval(lo, cols), line), line)
        self.height = float((self.lo - self.up).max())
        y0 = self.up.min() - 1.2 * self.height - 0.02 * iod
        y1 = self.lo.max() + 0.9 * self.height + 0.02 * iod
        self.roi = Roi(cols[0], y0 - 3, cols[-1] + 1, y1 + 3)
        # Lashes and lid margin, squeezed to a third when shut; never thicker than 0.45 of the lid above.
        self.lash = min(0.05 * iod, 0.45 * 1.2 * self.height)


class Eyes:
    """Lids and irises of both eyes, side by side in one table: the two cost one pass of numpy calls."""

    def __init__(self, p: np.ndarray, iod: float) -> None:
        eyes = [_Lids(p[36:42], iod), _Lids(p[42:48], iod)]
        y0, y1 = min(eye.roi.y0 for eye in eyes), max(eye.roi.y1 for eye in eyes)
        self.rois = [Roi(eye.roi.x0, y0, eye.roi.x1, y1) for eye in eyes]  # the rows of both, for one ramp
        self._rows = self.rois[0].rows
        self._split = eyes[0].cols.size

        def per_col(values: list[float]) -> np.ndarray:
            return np.concatenate([np.full(eye.cols.size, v) for eye, v in zip(eyes, values, strict=True)])

        self._cols = np.concatenate([eye.cols for eye in eyes])
        heights = per_col([eye.height for eye in eyes])
        # Upper lid, lower lid, and the two per-eye constants the knots need: lid height, lash thickness.
        self._table = np.stack(
            [
                np.concatenate([e.up for e in eyes]),
                np.concatenate([e.lo for e in eyes]),
                heights,
                per_col([e.lash for e in eyes]),
            ]
        )
        ends = np.cumsum([0] + [eye.cols.size for eye in eyes])
        self._first = np.concatenate([np.full(eye.cols.size, a) for eye, a in zip(eyes, ends[:-1], strict=True)])
        self._last = np.concatenate([np.full(eye.cols.size, b - 1) for eye, b in zip(eyes, ends[1:], strict=True)])
        widths = per_col([eye.width for eye in eyes])
        self._across = (self._cols - per_col([eye.c0[0] for eye in eyes])) / widths  # 0..1 corner to corner
        self._inv_width = 1.0 / widths
        self._iris_x, self._iris_y = 0.11 * widths, 0.25 * heights  # how far the iris moves at full gaze

    @staticmethod
    def _knots(blink: float) -> np.ndarray:
        """Output then source knots as weights of (upper lid, lower lid, lid height, lash): a (10, 4) matrix.

        The lid skin above the lashes stretches down, the lash line rides on its edge at its own
        thickness, and the opening is squeezed shut under it: a closed eye shows lid and lashes, not
        a squashed dark eye (measured lids sit on the lash line, so the lashes must move as a band).
        The lids meet 0.78 of the way down.
        """
        b, shut = 0.78 * blink, 1.0 - 0.22 * blink
        return np.array(
            [
                [1.0, 0.0, -1.2, 0.0],  # out: top of the stretch
                [1.0 - b, b, 0.0, -(1.0 - 0.65 * blink)],  # lash line
                [1.0 - b, b, 0.0, 0.0],  # upper lid
                [1.0 - shut, shut, 0.0, 0.0],  # lower lid
                [0.0, 1.0, 0.9, 0.0],  # bottom of the stretch
                [1.0, 0.0, -1.2, 0.0],  # source
                [1.0, 0.0, 0.0, -1.0],
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 1.0, 0.9, 0.0],
            ]
        )

    def warp(self, pose: Pose, shift: np.ndarray) -> list[Patch]:
        """The lids' and irises' displacements, in head coordinates (``shift``: the head's motion)."""
        blink = max(pose.blink, 0.35 * max(pose.gaze_y, 0.0))
        if blink <= 1e-3 and not (pose.gaze_x or pose.gaze_y):
            return []
        y = (self._rows - shift[1])[:, None]
        pos = np.arange(self._cols.size, dtype=np.float64) - shift[0]
        knots = (self._knots(blink) @ sample(self._table, pos, self._first, self._last)).astype(np.float32)
        dy = ramps(y, knots[:5], knots[5:])
        across = self._across - shift[0] * self._inv_width
        inside = np.flatnonzero((across > 0.0) & (across < 1.0))
        y0 = int(self._rows[0])
        sides = [
            (roi.x0, part)
            for roi, part in zip(self.rois, (slice(0, self._split), slice(self._split, None)), strict=True)
        ]
        patches = [Patch(y0, x0, 1, dy[:, part]) for x0, part in sides]
        if (pose.gaze_x or pose.gaze_y) and inside.size:
            # Only the openings move (between the corners, between the lids): their rows and columns.
            c = slice(inside[0], inside[-1] + 1)
            ub, db = knots[2, c], knots[3, c]
            r0 = max(int(ub.min() - y[0, 0]), 0)
            r1 = min(int(np.ceil(db.max() - y[0, 0])) + 1, y.shape[0])
            down = unit((y[r0:r1] - ub) / np.maximum(db - ub, 1e-3))
            # The iris moves as a whole; only the last pixels at the lids shear.
            bump = np.sin(np.pi * unit(across[c])) ** 1.2 * unit(np.minimum(down, 1 - down) / 0.18)
            dx = np.zeros((r1 - r0, self._cols.size), np.float32)
            dx[:, c] = bump * (self._iris_x[c] * -pose.gaze_x)
            dy[r0:r1, c] -= bump * (self._iris_y[c] * pose.gaze_y)
            patches += [Patch(y0 + r0, x0, 0, dx[:, part]) for x0, part in sides]
        return patches


class Brows:
    """Both brows and the forehead above them lift together; the skin down to the lids stretches."""

    def __init__(self, p: np.ndarray, iod: float, lids: float) -> None:
        """``lids``: the highest point of the upper lids, where the lift has faded out."""
        brows = p[17:27]
        self.lift = 0.07 * iod
        x0, x1 = brows[:, 0].min() - 0.15 * iod, brows[:, 0].max() + 0.15 * iod
        top = brows[:, 1].min() - 0.7 * iod
        self.roi = Roi(x0, top, x1, lids)
        cols = self.roi.cols
        line = np.interp(cols, *zip(*sorted(brows.tolist()), strict=True))  # brow line y per column
        self._top, self._bottom = top, lids
        # Full lift over each brow, less between them and at the outer ends.
        centres = [brows[:5, 0].mean(), brows[5:, 0].mean()]
        prof = np.clip(sum(np.exp(-(((cols - c) / (0.42 * iod)) ** 2)) for c in centres), 0.0, 1.0)
        self._table = np.stack([line, prof])

    def warp(self, pose: Pose, shift: np.ndarray) -> list[Patch]:
        """The forehead's displacement, in head coordinates (``shift``: the head's motion)."""
        if pose.brow <= 1e-3 or self.roi.y1 <= self.roi.y0:
            return []
        roi = self.roi
        x = roi.cols - shift[0]
        y = (roi.rows - shift[1])[:, None]
        line, prof = sample(self._table, x - roi.x0)
        k_out = np.empty((3, x.size), np.float32)
        k_out[0], k_out[1], k_out[2] = self._top, line - pose.brow * self.lift * prof, self._bottom
        k_src = k_out.copy()
        k_src[1] = line
        return [Patch(roi.y0, roi.x0, 1, ramps(y, k_out, k_src))]
