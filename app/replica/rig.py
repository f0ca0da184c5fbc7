"""The face rig: one backward-warp map per frame, one cv2.remap, then the inner mouth.

The map is built in three layers, cheapest first:

* head and breathing: four smooth basis fields at quarter resolution,
  combined linearly and upscaled (they are smooth, so nothing is lost);
* mouth and jaw: per image column, a piecewise-linear map from output rows to
  source rows between knots on the landmark curves (nose base, upper lip,
  inner lips, lower lip, chin, neck). Opening moves the knots apart; a photo
  whose mouth is open (teeth showing) is closed by the same knots, so the
  replica rests with closed lips whatever the photo;
* eyelids and irises: the same idea per eye (the upper lid is stretched down
  over the eyeball for a blink; the iris is shifted inside the opening).

The mouth and eye maps are evaluated at head-compensated coordinates, so the
head can move without the lips drifting off their painted gap. The gap
between the lips is then painted (cavity, teeth, tongue) in the same coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.replica.face import FRAME_SIZE, JAW, Face, skin_mask
from app.replica.paint import UPPER_SHARE, MouthPainter

_LOWRES = 4  # quarter-resolution head fields


@dataclass(frozen=True)
class Pose:
    """Everything one frame depends on; lengths are in inter-ocular distances."""

    open: float = 0.0
    spread: float = 0.0
    round: float = 0.0
    tongue: float = 0.0  # tongue tip raised behind the upper teeth
    blink: float = 0.0
    brow: float = 0.0  # 0 rest .. 1 raised (stress, questions)
    gaze_x: float = 0.0  # -1 left .. 1 right (image directions)
    gaze_y: float = 0.0  # -1 up .. 1 down
    head_rot_deg: float = 0.0
    head_dx: float = 0.0
    head_dy: float = 0.0
    breath: float = 0.0


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _curve(points: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """y(x) through landmark points (sorted by x), constant beyond the ends."""
    order = np.argsort(points[:, 0])
    return np.interp(cols, points[order, 0], points[order, 1])


class _Roi:
    """A rectangle of the frame with its pixel-centre coordinates."""

    def __init__(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.x0, self.y0 = max(int(x0), 0), max(int(y0), 0)
        self.x1, self.y1 = min(int(np.ceil(x1)), FRAME_SIZE), min(int(np.ceil(y1)), FRAME_SIZE)
        self.slice = (slice(self.y0, self.y1), slice(self.x0, self.x1))
        self.cols = np.arange(self.x0, self.x1, dtype=np.float64)
        self.rows = np.arange(self.y0, self.y1, dtype=np.float64)


def _ramps(y: np.ndarray, k_out: np.ndarray, k_src: np.ndarray) -> np.ndarray:
    """Map output rows to source rows, piecewise linear between per-column knots.

    ``y`` is (rows, 1), knots are (k, cols) with identical first and last
    knots (identity outside them). A zero-length output segment is a jump in
    the source: that is how lips close over teeth and a lid covers an eye.
    """
    out = np.repeat(y, k_out.shape[1], axis=1).astype(np.float32)
    d_out, d_src = np.diff(k_out, axis=0), np.diff(k_src, axis=0)
    inv = 1.0 / np.maximum(d_out, 1e-3)
    for i in range(d_out.shape[0]):
        if not np.any(d_src[i] != d_out[i]):
            continue  # a segment that is not stretched adds nothing
        r = np.clip((y - k_out[i]) * inv[i], 0.0, 1.0)
        out += r * (d_src[i] - d_out[i])
    return out


class FaceRig:
    """Draws a Face in any Pose. Immutable after construction, so thread-safe."""

    def __init__(self, face: Face) -> None:
        self.face = face
        self.base = np.ascontiguousarray(face.image)
        p = face.points
        self.iod = iod = face.iod
        luma = cv2.cvtColor(self.base, cv2.COLOR_BGR2GRAY)
        skin = luma[skin_mask(p, luma.shape)]
        self.light = float(np.clip(np.median(skin) / 185.0, 0.35, 1.1)) if skin.size else 1.0
        gy, gx = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE].astype(np.float32)
        self._grid_x, self._grid_y = gx, gy
        self._init_head(p, iod)
        self._init_mouth(p, iod)
        self._eyes = [_Eye(p[36:42], iod), _Eye(p[42:48], iod)]
        self._brows = _Brows(p, iod, float(p[[37, 38, 43, 44], 1].min()))

    # --- head and breathing -------------------------------------------------

    def _init_head(self, p: np.ndarray, iod: float) -> None:
        n = FRAME_SIZE // _LOWRES
        c = (np.arange(n) + 0.5) * _LOWRES - 0.5  # cv2.resize pixel-centre convention
        y, x = np.meshgrid(c, c, indexing="ij")
        eyes_mid = (p[36:42].mean(0) + p[42:48].mean(0)) / 2
        chin = p[8]
        centre = np.array([eyes_mid[0], (eyes_mid[1] + chin[1]) / 2 - 0.35 * iod])
        r = np.hypot((x - centre[0]) / (1.55 * iod), (y - centre[1]) / (1.95 * iod))
        head = _smoothstep((1.45 - r) / 0.55)
        torso = _smoothstep((y - (chin[1] + 0.35 * iod)) / (0.9 * iod))
        pivot = chin + np.array([0.0, 0.45 * iod])
        self._basis = np.stack(
            [
                np.stack([-(y - pivot[1]) * head, (x - pivot[0]) * head]),  # rotation, per radian
                np.stack([head * iod, 0 * head]),  # dx per iod
                np.stack([0 * head, head * iod]),  # dy per iod
                np.stack([0 * head, -(0.012 * head + 0.02 * torso) * iod]),  # breath: chest and head rise
            ]
        ).astype(np.float32)

    def _head_map(self, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        coef = np.array([np.deg2rad(pose.head_rot_deg), pose.head_dx, pose.head_dy, pose.breath], dtype=np.float32)
        fwd = np.tensordot(coef, self._basis, axes=1)  # forward motion (2, n, n)
        size = (FRAME_SIZE, FRAME_SIZE)
        map_x = self._grid_x - cv2.resize(fwd[0], size, interpolation=cv2.INTER_LINEAR)
        map_y = self._grid_y - cv2.resize(fwd[1], size, interpolation=cv2.INTER_LINEAR)
        return map_x, map_y

    # --- mouth and jaw ------------------------------------------------------

    def _init_mouth(self, p: np.ndarray, iod: float) -> None:
        jaw = p[JAW]
        top = p[48:55, 1].min() - 0.33 * iod
        bottom = p[8, 1] + 0.7 * iod
        self._mroi = roi = _Roi(jaw[2:15, 0].min() - 0.1 * iod, top - 4, jaw[2:15, 0].max() + 0.1 * iod, bottom + 4)
        cols = roi.cols
        corners = p[[48, 54]]
        outer_up = _curve(p[48:55], cols)
        inner_up = _curve(p[[48, 60, 61, 62, 63, 64, 54]], cols)
        inner_lo = _curve(p[[48, 60, 67, 66, 65, 64, 54]], cols)
        outer_lo = _curve(p[[48, 59, 58, 57, 56, 55, 54]], cols)
        chin = np.maximum(_curve(jaw[4:13], cols), outer_lo + 0.2 * iod)
        # Where the photo shows teeth, sample the lips a little inside their inner edge,
        # so a closed mouth shows lip against lip rather than a line of tooth pixels.
        inset = 0.8 * np.clip(inner_lo - inner_up, 0.0, 1.0)
        inner_up, inner_lo = inner_up - inset, inner_lo + inset
        self._m_src = {"uo": outer_up, "su": inner_up, "sl": inner_lo, "lb": outer_lo, "c": chin}
        self._m_top, self._m_bottom = top, bottom
        self._mouth_w = float(corners[1, 0] - corners[0, 0])
        self._cx = float(p[[60, 64], 0].mean())
        self._hw = float(max(p[64, 0] - p[60, 0], 0.5 * self._mouth_w) / 2)
        self._my = float(p[[48, 54, 60, 64], 1].mean())
        self._open_max = 0.36 * self._mouth_w
        half_face = max((jaw[12, 0] - jaw[4, 0]) / 2, 1.0)
        self._jaw_prof = np.clip(1 - ((cols - p[8, 0]) / half_face) ** 2, 0, 1) ** 0.6
        self._lip_prof = np.clip(1 - ((cols - self._cx) / (self._mouth_w / 2)) ** 2, 0, 1)
        self.painter = MouthPainter(self._cx, self._hw, 0.13 * self._mouth_w, self.light)

    def _mouth_knots(self, pose: Pose, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Output and source knots per (source) column, and the lip-gap profile."""
        s = {k: np.interp(cols, self._mroi.cols, v) for k, v in self._m_src.items()}
        prof = np.clip(1 - ((cols - self._cx) / self._hw) ** 2, 0, 1) ** 0.55
        gap = self._open_max * pose.open * prof
        mid = (s["su"] + s["sl"]) / 2
        su_o = mid - UPPER_SHARE * gap
        sl_o = mid + (1.0 - UPPER_SHARE) * gap
        lip = np.interp(cols, self._mroi.cols, self._lip_prof)
        pout = pose.round * 0.03 * self.iod * lip
        uo_o = s["uo"] + (su_o - s["su"]) - pout
        lb_o = s["lb"] + (sl_o - s["sl"]) + pout
        jaw = np.interp(cols, self._mroi.cols, self._jaw_prof)
        c_o = np.maximum(s["c"] + 0.8 * self._open_max * pose.open * jaw, lb_o + 2.0)
        top, bottom = np.full_like(cols, self._m_top), np.full_like(cols, self._m_bottom)
        k_out = np.stack([top, uo_o, su_o, sl_o, lb_o, c_o, bottom]).astype(np.float32)
        k_src = np.stack([top, s["uo"], s["su"], s["sl"], s["lb"], s["c"], bottom]).astype(np.float32)
        return k_out, k_src, gap

    def _warp_mouth(self, pose: Pose, shift: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> _Gap:
        """Add the mouth/jaw displacement to the head map inside the mouth region.

        ``shift`` is the head's motion at the mouth: the displacement is
        evaluated in head coordinates so the lips ride along with the head.
        """
        roi = self._mroi
        x = roi.cols - shift[0]
        y = (roi.rows - shift[1])[:, None]
        width = 1.0 + 0.2 * pose.spread - 0.38 * pose.round
        k = 1.0 - 1.0 / width
        # The lips scale about the middle; beyond the corners the shift fades within a quarter of a mouth
        # width, so the cheeks follow a little and the face's outline does not move.
        u = x - self._cx
        beyond = np.maximum(np.abs(u) - 0.5 * self._mouth_w, 0.0) / (0.25 * self._mouth_w)
        shift_x = np.sign(u) * np.minimum(np.abs(u), 0.5 * self._mouth_w) * np.exp(-0.5 * beyond**2) * k
        col = x - shift_x  # the source column at the mouth row
        k_out, k_src, gap = self._mouth_knots(pose, col)
        dy = _ramps(y, k_out, k_src) - y
        map_y[roi.slice] += dy
        if k != 0.0:
            fy = np.exp(-(((y - self._my) / (0.34 * self._mouth_w)) ** 2))
            map_x[roi.slice] -= shift_x[None, :] * fy
        return _Gap(col=col, y=y, top=k_out[2], bottom=k_out[3], gap=gap)

    # --- drawing ------------------------------------------------------------

    def draw(self, pose: Pose) -> np.ndarray:
        map_x, map_y = self._head_map(pose)
        cy, cx = int(self._my), int(self._cx)
        shift = np.array([cx - map_x[cy, cx], cy - map_y[cy, cx]])
        gap = self._warp_mouth(pose, shift, map_x, map_y)
        self._brows.warp(pose, shift, map_y)
        for eye in self._eyes:
            eye.warp(pose, shift, map_x, map_y)
        frame = cv2.remap(self.base, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        self.painter.paint(frame[self._mroi.slice], gap.col, gap.y, gap.top, gap.bottom, pose.tongue)
        return frame

    @property
    def mouth_box(self) -> tuple[int, int, int, int]:
        """x0, y0, x1, y1 of the region the mouth animation may touch."""
        r = self._mroi
        return r.x0, r.y0, r.x1, r.y1


@dataclass(frozen=True)
class _Gap:
    """Where the lips are apart this frame, in head coordinates."""

    col: np.ndarray  # (cols,) source column of each output column
    y: np.ndarray  # (rows, 1) head-compensated rows
    top: np.ndarray  # (cols,) inner edge of the upper lip
    bottom: np.ndarray  # (cols,) inner edge of the lower lip
    gap: np.ndarray


class _Eye:
    """Lids and iris of one eye, from its six landmarks (corner, 2 upper, corner, 2 lower)."""

    def __init__(self, pts: np.ndarray, iod: float) -> None:
        c0, c1 = pts[0], pts[3]
        self.c0, self.c1 = (c0, c1) if c0[0] < c1[0] else (c1, c0)
        width = self.c1[0] - self.c0[0]
        cols = np.arange(int(self.c0[0] - 0.3 * width), int(np.ceil(self.c1[0] + 0.3 * width)), dtype=np.float64)
        inside = (cols > self.c0[0]) & (cols < self.c1[0])
        line = np.interp(cols, [self.c0[0], self.c1[0]], [self.c0[1], self.c1[1]])
        up = np.polyfit(pts[[0, 1, 2, 3], 0], pts[[0, 1, 2, 3], 1], 3)
        lo = np.polyfit(pts[[0, 5, 4, 3], 0], pts[[0, 5, 4, 3], 1], 3)
        self._cols = cols
        self.up = np.where(inside, np.minimum(np.polyval(up, cols), line), line)
        self.lo = np.where(inside, np.maximum(np.polyval(lo, cols), line), line)
        self.height = float((self.lo - self.up).max())
        y0 = self.up.min() - 1.2 * self.height - 0.02 * iod
        y1 = self.lo.max() + 0.9 * self.height + 0.02 * iod
        self.roi = _Roi(cols[0], y0 - 3, cols[-1] + 1, y1 + 3)
        self.width = width
        self.lash = 0.05 * iod  # lashes and lid margin, squeezed to a third when shut

    def warp(self, pose: Pose, shift: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> None:
        blink = max(pose.blink, 0.35 * max(pose.gaze_y, 0.0))
        if blink <= 1e-3 and not (pose.gaze_x or pose.gaze_y):
            return
        roi = self.roi
        x = roi.cols - shift[0]
        y = (roi.rows - shift[1])[:, None]
        up, lo = np.interp(x, self._cols, self.up), np.interp(x, self._cols, self.lo)
        meet = up + 0.78 * (lo - up)
        ub, db = up + blink * (meet - up), lo - blink * (lo - meet)
        top, bot = up - 1.2 * self.height, lo + 0.9 * self.height
        # The lid skin above the lashes stretches down, the lash line rides on its edge at its own
        # thickness, and the opening is squeezed shut under it: a closed eye shows lid and lashes, not
        # a squashed dark eye (measured lids sit on the lash line, so the lashes must move as a band).
        lash = np.minimum(self.lash, 0.45 * (up - top))
        k_out = np.stack([top, ub - lash * (1.0 - 0.65 * blink), ub, db, bot]).astype(np.float32)
        k_src = np.stack([top, up - lash, up, lo, bot]).astype(np.float32)
        dy = _ramps(y, k_out, k_src) - y
        if pose.gaze_x or pose.gaze_y:
            across = np.clip((x - self.c0[0]) / self.width, 0, 1)
            down = np.clip((y - ub) / np.maximum(db - ub, 1e-3), 0, 1)
            # The iris moves as a whole; only the last pixels at the lids shear.
            bump = np.sin(np.pi * across) ** 1.2 * np.clip(np.minimum(down, 1 - down) / 0.18, 0, 1)
            map_x[roi.slice] -= (0.11 * self.width * pose.gaze_x) * bump
            dy -= (0.25 * self.height * pose.gaze_y) * bump
        map_y[roi.slice] += dy


class _Brows:
    """Both brows and the forehead above them lift together; the skin down to the lids stretches."""

    def __init__(self, p: np.ndarray, iod: float, lids: float) -> None:
        """``lids``: the highest point of the upper lids, where the lift has faded out."""
        brows = p[17:27]
        self.lift = 0.07 * iod
        x0, x1 = brows[:, 0].min() - 0.15 * iod, brows[:, 0].max() + 0.15 * iod
        top = brows[:, 1].min() - 0.7 * iod
        self.roi = _Roi(x0, top, x1, lids)
        cols = self.roi.cols
        self._line = np.interp(cols, *zip(*sorted(brows.tolist()), strict=True))  # brow line y per column
        self._top, self._bottom = top, lids
        # Full lift over each brow, less between them and at the outer ends.
        centres = [brows[:5, 0].mean(), brows[5:, 0].mean()]
        self._prof = np.clip(sum(np.exp(-(((cols - c) / (0.42 * iod)) ** 2)) for c in centres), 0.0, 1.0)

    def warp(self, pose: Pose, shift: np.ndarray, map_y: np.ndarray) -> None:
        if pose.brow <= 1e-3 or self.roi.y1 <= self.roi.y0:
            return
        roi = self.roi
        x = roi.cols - shift[0]
        y = (roi.rows - shift[1])[:, None]
        line = np.interp(x, roi.cols, self._line)
        lift = pose.brow * self.lift * np.interp(x, roi.cols, self._prof)
        top, bottom = np.full_like(x, self._top), np.full_like(x, self._bottom)
        k_out = np.stack([top, line - lift, bottom]).astype(np.float32)
        k_src = np.stack([top, line, bottom]).astype(np.float32)
        map_y[roi.slice] += _ramps(y, k_out, k_src) - y
