"""The inside of the mouth, painted into the gap the warp opens between the lips.

Stretching lip pixels into the gap would look like rubber, and the photo's own
teeth (if any) are not where an opened jaw would show them, so the gap is
drawn: a dark cavity, the upper teeth hanging from the upper lip, lower teeth
and tongue appearing as the jaw drops. Colours are scaled by the face's
brightness so the teeth never glow in a dim photo.
"""

from __future__ import annotations

import numpy as np

_CAVITY_EDGE = np.array([40.0, 34.0, 78.0])  # BGR
_CAVITY_DEEP = np.array([16.0, 13.0, 30.0])
_TONGUE = np.array([80.0, 82.0, 160.0])
_TEETH_UP = np.array([186.0, 206.0, 220.0])
_TEETH_LO = np.array([146.0, 162.0, 178.0])
_TOOTH_EDGES = np.array([0.0, 0.2, -0.2, 0.38, -0.38, 0.54, -0.54])


class MouthPainter:
    def __init__(self, cx: float, half_width: float, teeth_height: float, light: float) -> None:
        self.cx = cx
        self.hw = half_width
        self.teeth_h = teeth_height
        self.light = light

    def paint(self, frame: np.ndarray, col: np.ndarray, y: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> None:
        """Blend the mouth interior into ``frame`` (a view) where top <= y < bottom.

        ``col`` (per frame column) is its source column, ``y`` (per row, shape
        (rows, 1)) the head-compensated row, ``top``/``bottom`` (per column)
        the inner edges of the upper and lower lip.
        """
        gap = bottom - top
        depth = y - top
        self._seam(frame, col, depth, gap)
        alpha = np.clip(np.minimum(depth, gap - depth) + 0.5, 0.0, 1.0) * np.clip(gap, 0.0, 1.0)
        rows, cols = np.nonzero(alpha > 0.0)
        if rows.size == 0:
            return
        a = alpha[rows, cols][:, None]
        g = gap[cols]
        d = depth[rows, cols]
        c = col[cols]
        u = (c - self.cx) / self.hw
        rel = np.clip(d / np.maximum(g, 1e-3), 0.0, 1.0)

        # Cavity: darkest in the middle, lighter at the lips and corners.
        deep = np.exp(-(((rel - 0.55) / 0.35) ** 2)) * np.clip(1 - u * u, 0, 1)
        color = _CAVITY_EDGE + (_CAVITY_DEEP - _CAVITY_EDGE) * deep[:, None]

        # Tongue: a low mound behind the lower teeth once the jaw is well open.
        tongue_y = (rel - 1.0) / 0.32
        tongue = np.clip(1.0 - (u / 0.6) ** 2 - tongue_y**2, 0.0, 1.0) * np.clip((g - 0.9 * self.teeth_h) / 6.0, 0, 1)
        shade = 0.75 + 0.25 * np.clip(-tongue_y, 0, 1)
        color += (_TONGUE * shade[:, None] - color) * np.clip(tongue * 3.0, 0, 1)[:, None]

        # Lower teeth: a narrow band above the lower lip, only in a wide-open mouth.
        lo_h = np.clip(g - 1.1 * self.teeth_h, 0, 0.4 * self.teeth_h) * np.sqrt(np.clip(1 - (u / 0.62) ** 2, 0, 1))
        lower = np.clip(lo_h - (g - d) + 0.5, 0, 1)
        color += (_TEETH_LO * (1 - 0.5 * u * u)[:, None] - color) * lower[:, None]

        # Upper teeth: hang from the upper lip, shorter and shadowed toward the corners.
        up_h = np.minimum(self.teeth_h, 0.8 * g) * (1 - 0.35 * u * u) * (np.abs(u) < 0.85)
        upper = np.clip(up_h - d + 0.5, 0, 1)
        edge_px = np.abs(c[:, None] - (self.cx + _TOOTH_EDGES * self.hw)).min(axis=1)
        seams = 0.86 + 0.14 * np.clip(edge_px / 0.7, 0, 1)
        tip = 1.0 - 0.12 * np.clip((d - 0.6 * up_h) / np.maximum(0.4 * up_h, 1e-3), 0, 1)
        teeth = _TEETH_UP * ((1 - 0.45 * u * u) * seams * tip)[:, None]
        color += (teeth - color) * upper[:, None]

        # The lips shade the first pixel or two of the opening.
        lip_shadow = 0.82 + 0.18 * np.clip(np.minimum(d, g - d) / 1.5, 0, 1)
        color *= (lip_shadow * self.light)[:, None]

        region = frame[rows, cols].astype(np.float32)
        frame[rows, cols] = np.clip(region + (color - region) * a, 0, 255).astype(np.uint8)

    def _seam(self, frame: np.ndarray, col: np.ndarray, depth: np.ndarray, gap: np.ndarray) -> None:
        """Closed lips meet in a soft shadow line; it fades as they part."""
        u = (col - self.cx) / self.hw
        strength = 0.4 * np.clip(1 - u * u, 0, 1) * np.clip(1 - gap / 2.0, 0, 1)
        near = np.clip(1 - np.abs(depth - 0.5 * gap) / 1.3, 0, 1) * strength
        rows, cols = np.nonzero(near > 0.02)
        if rows.size:
            shade = 1.0 - near[rows, cols][:, None] * 0.6
            frame[rows, cols] = (frame[rows, cols] * shade).astype(np.uint8)
