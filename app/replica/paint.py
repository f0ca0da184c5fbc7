"""The inside of the mouth, painted into the gap the warp opens between the lips.

Stretching lip pixels into the gap would look like rubber, and the photo's own
teeth (if any) are not where an opened jaw would show them, so the gap is
drawn. The upper teeth belong to the skull: their edge stays on the line where
the lips meet at rest, and they show as the upper lip lifts. The lower teeth
ride on the jaw, a little less far than the lower lip, so they peep out only
when the mouth is wide. Between them a dark cavity, a tongue lying low, and
its tip raised behind the upper teeth for t, d, n, l and th. Everything is
shaded by how far the mouth is open (a mouth barely open is mostly shadow)
and by the face's brightness, so the teeth never glow in a dim photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.replica.fields import unit

_CAVITY_EDGE = np.array([40.0, 34.0, 78.0])  # BGR
_CAVITY_DEEP = np.array([16.0, 13.0, 30.0])
_TONGUE = np.array([88.0, 90.0, 168.0])
_TEETH_UP = np.array([186.0, 206.0, 220.0])
_TEETH_LO = np.array([150.0, 166.0, 182.0])
_TOOTH_EDGES = np.array([0.0, 0.2, -0.2, 0.38, -0.38, 0.54, -0.54])
UPPER_SHARE = 0.3  # of the opening, taken by the upper lip lifting (the rest by the jaw): see rig._mouth_knots


class MouthPainter:
    def __init__(self, cx: float, half_width: float, teeth_height: float, light: float) -> None:
        self.cx = cx
        self.hw = half_width
        self.teeth_h = teeth_height
        self.light = light

    def paint(
        self,
        frame: np.ndarray,
        col: np.ndarray,
        y: np.ndarray,
        top: np.ndarray,
        bottom: np.ndarray,
        tongue: float = 0.0,
    ) -> None:
        """Blend the mouth interior into ``frame`` (a view) where top <= y < bottom.

        ``col`` (per frame column) is its source column, ``y`` (per row, shape
        (rows, 1)) the head-compensated row, ``top``/``bottom`` (per column)
        the inner edges of the upper and lower lip; ``tongue`` (0..1) raises
        the tongue's tip to the upper teeth.
        """
        self.plan(col, y, top, bottom, tongue).apply(frame)

    def plan(self, col: np.ndarray, y: np.ndarray, top: np.ndarray, bottom: np.ndarray, tongue: float = 0.0) -> Strokes:
        """What ``paint`` will do, without the frame: the rig plans before its remap, while the arrays
        it needs are still in the cache, and applies after."""
        gap = bottom - top
        seam = self._seam(col, y, top, gap)
        # Only the columns where the lips are apart, and the rows between their inner edges, can be painted.
        box = _band(y[:, 0], gap > 0.0, top - 0.5, bottom + 0.5)
        if box is None:
            return Strokes(seam, None)
        (r0, r1), (c0, c1) = box
        depth = y[r0:r1] - top[c0:c1]
        alpha = unit(np.minimum(depth, gap[c0:c1] - depth) + 0.5) * unit(gap[c0:c1])
        rows, cols = np.nonzero(alpha > 0.0)
        if rows.size == 0:
            return Strokes(seam, None)
        a = alpha[rows, cols][:, None]
        d = depth[rows, cols]
        rows += r0
        cols += c0
        g = gap[cols]
        c = col[cols]
        u = (c - self.cx) / self.hw
        th = self.teeth_h
        rel = unit(d / np.maximum(g, 1e-3))
        rest_line = UPPER_SHARE * g  # where the lips met at rest, measured down from the upper lip
        lit = 0.5 + 0.5 * unit(g / (1.1 * th))  # light gets in as the mouth opens

        # Cavity: darkest in the middle, lighter at the lips and corners.
        deep = np.exp(-(((rel - 0.55) / 0.35) ** 2)) * unit(1 - u * u)
        color = _CAVITY_EDGE + (_CAVITY_DEEP - _CAVITY_EDGE) * deep[:, None]

        # Tongue body: a low mound behind the lower teeth once the jaw is well open.
        tongue_y = (rel - 1.0) / 0.32
        mound = unit(1.0 - (u / 0.6) ** 2 - tongue_y**2) * unit((g - 0.9 * th) / 6.0)
        shade = 0.75 + 0.25 * unit(-tongue_y)
        color += (_TONGUE * shade[:, None] - color) * unit(mound * 3.0)[:, None]

        # Lower teeth: their edge rides on the jaw, 0.55 of the opening down (the lip goes 0.7).
        lo_edge = rest_line + 0.55 * g - 0.1 * th + 0.3 * th * u * u
        lower = unit(d - lo_edge + 0.5) * (np.abs(u) < 0.7)
        color += (_TEETH_LO * (1 - 0.5 * u * u)[:, None] * lit[:, None] - color) * lower[:, None]

        # Tongue tip: rises from the floor of the mouth to the back of the upper teeth.
        if tongue > 0.0:
            tip = rest_line + 0.1 * th + (1.0 - tongue) * 0.8 * g + 0.45 * g * (u / 0.45) ** 2
            raised = unit(d - tip + 0.5) * min(max(tongue * 2.0, 0.0), 1.0) * (np.abs(u) < 0.45)
            tongue_px = _TONGUE * (0.9 + 0.15 * unit((d - tip) / 3.0))[:, None] * lit[:, None]
            color += (tongue_px - color) * raised[:, None]

        # Upper teeth: fixed to the skull, their edge just below the rest line, shorter toward the corners.
        up_edge = rest_line + 0.12 * th - 0.35 * th * u * u
        upper = unit(up_edge - d + 0.5) * (np.abs(u) < 0.85)
        edge_px = np.abs(col[c0:c1, None] - (self.cx + _TOOTH_EDGES * self.hw)).min(axis=1)[cols - c0]  # per column
        seams = 0.86 + 0.14 * unit(edge_px / 0.7)
        tip = 1.0 - 0.12 * unit((d - up_edge + 2.0) / 2.0)  # translucent incisal edge
        teeth = _TEETH_UP * ((1 - 0.45 * u * u) * seams * tip * lit)[:, None]
        color += (teeth - color) * upper[:, None]
        if tongue > 0.6:  # th: the tip comes out between the teeth, in front of the upper edge
            dental = min(max((tongue - 0.6) / 0.3, 0.0), 1.0) * unit(d - (up_edge - 0.3 * th) + 0.5)
            color += (tongue_px - color) * (raised * dental)[:, None]

        # The lips shade the first pixel or two of the opening.
        lip_shadow = 0.82 + 0.18 * unit(np.minimum(d, g - d) / 1.5)
        color *= (lip_shadow * self.light)[:, None]

        return Strokes(seam, (rows, cols, color, a))

    def _seam(
        self, col: np.ndarray, y: np.ndarray, top: np.ndarray, gap: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Closed lips meet in a soft shadow line; it fades as they part."""
        u = (col - self.cx) / self.hw
        strength = 0.4 * unit(1 - u * u) * unit(1 - gap / 2.0)
        line = top + 0.5 * gap
        box = _band(y[:, 0], strength > 0.0, line - 1.3, line + 1.3)  # the only pixels it can shade
        if box is None:
            return None
        (r0, r1), (c0, c1) = box
        depth = y[r0:r1] - top[c0:c1]
        near = unit(1 - np.abs(depth - 0.5 * gap[c0:c1]) / 1.3) * strength[c0:c1]
        rows, cols = np.nonzero(near > 0.02)
        if rows.size == 0:
            return None
        shade = 1.0 - near[rows, cols][:, None] * 0.6
        rows += r0
        cols += c0
        return rows, cols, shade


@dataclass(frozen=True)
class Strokes:
    """A planned paint: the pixels of the lips' seam and their shade, the pixels of the gap and their colour."""

    seam: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # rows, cols, shade (n, 1)
    fill: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None  # rows, cols, colour (n, 3), alpha (n, 1)

    def apply(self, frame: np.ndarray) -> None:
        if self.seam is not None:
            rows, cols, shade = self.seam
            frame[rows, cols] = (frame[rows, cols] * shade).astype(np.uint8)
        if self.fill is not None:
            rows, cols, color, a = self.fill
            region = frame[rows, cols].astype(np.float32)
            frame[rows, cols] = np.clip(region + (color - region) * a, 0, 255).astype(np.uint8)


def _band(
    rows: np.ndarray, on: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Row and column ranges holding every pixel with lo < row < hi in a column where ``on``.

    ``rows`` is increasing. Everything outside is untouched by a paint step, so it need not be computed.
    """
    on_cols = np.flatnonzero(on)
    if on_cols.size == 0:
        return None
    c0, c1 = int(on_cols[0]), int(on_cols[-1]) + 1
    r0 = int(np.searchsorted(rows, lo[c0:c1].min(), side="right"))
    r1 = int(np.searchsorted(rows, hi[c0:c1].max(), side="left"))
    return ((r0, r1), (c0, c1)) if r1 > r0 else None
