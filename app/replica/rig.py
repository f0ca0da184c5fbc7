"""The face rig: one backward-warp map per frame, remapped where it moves, then the inner mouth.

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

A frame's CPU is taken from the LLM decoding beside it, so the work is kept to
where something moves: the local layers are patches over their own rectangles,
the remap skips the frame's corners (the photo as it is), and the ramps and
the painter compute only the rows and columns they change (app/replica/fields.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from app.replica.eyes import Brows, Eyes
from app.replica.face import FRAME_SIZE, JAW, Face, skin_mask
from app.replica.fields import Patch, Roi, ramps, sample, unit
from app.replica.paint import UPPER_SHARE, MouthPainter

_LOWRES = 4  # quarter-resolution head fields
_STRIP = 32  # rows of the frame remapped at once (see FaceRig._moving_strips)


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


class FaceRig:
    """Draws a Face in any Pose. Immutable after construction but for per-thread scratch, so thread-safe."""

    def __init__(self, face: Face) -> None:
        self.face = face
        self.base = np.ascontiguousarray(face.image)
        p = face.points
        self.iod = iod = face.iod
        luma = cv2.cvtColor(self.base, cv2.COLOR_BGR2GRAY)
        skin = luma[skin_mask(p, luma.shape)]
        self.light = float(np.clip(np.median(skin) / 185.0, 0.35, 1.1)) if skin.size else 1.0
        self._grid = np.arange(FRAME_SIZE, dtype=np.float32)  # pixel coordinates along either axis
        self._scratch = threading.local()  # per-thread map buffers: the one state draw writes
        self._init_head(p, iod)
        self._init_mouth(p, iod)
        self._eyes = Eyes(p, iod)
        self._brows = Brows(p, iod, float(p[[37, 38, 43, 44], 1].min()))
        self._strips = self._moving_strips()

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
        """The backward map of the head and chest alone, at full resolution."""
        coef = np.array([np.deg2rad(pose.head_rot_deg), pose.head_dx, pose.head_dy, pose.breath], dtype=np.float32)
        fwd = np.tensordot(coef, self._basis, axes=1)  # forward motion (2, n, n)
        # The maps never leave draw, so each thread reuses its own: two fresh 1 MB arrays a frame cost
        # ~500 page faults whenever the allocator has handed the memory back to the system.
        maps = getattr(self._scratch, "maps", None)
        if maps is None:
            maps = self._scratch.maps = np.empty((2, FRAME_SIZE, FRAME_SIZE), np.float32)
        size = (FRAME_SIZE, FRAME_SIZE)
        map_x = cv2.resize(fwd[0], size, maps[0], interpolation=cv2.INTER_LINEAR)
        map_y = cv2.resize(fwd[1], size, maps[1], interpolation=cv2.INTER_LINEAR)
        # In place, and against a row (column) of coordinates rather than a full grid: half the memory traffic.
        np.subtract(self._grid[None, :], map_x, out=map_x)
        np.subtract(self._grid[:, None], map_y, out=map_y)
        return map_x, map_y

    def _moving_strips(self) -> list[tuple[slice, slice]]:
        """Strips of rows and, in each, the columns the warp can move.

        Elsewhere the frame is the photo: the head fields are exactly zero in the frame's corners,
        where remapping would only copy it (about a fifth of the frame).
        """
        still = (self._basis == 0).all(axis=(0, 1)).astype(np.float32)
        size = (FRAME_SIZE, FRAME_SIZE)
        moving = cv2.resize(still, size, interpolation=cv2.INTER_LINEAR) < 1.0
        moving = cv2.dilate(moving.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # a pixel to spare
        for roi in (self._mroi, self._brows.roi, *self._eyes.rois):
            moving[roi.slice] = True
        strips = []
        for r0 in range(0, FRAME_SIZE, _STRIP):
            cols = np.flatnonzero(moving[r0 : r0 + _STRIP].any(axis=0))
            if cols.size:
                strips.append((slice(r0, r0 + _STRIP), slice(int(cols[0]), int(cols[-1]) + 1)))
        return strips

    # --- mouth and jaw ------------------------------------------------------

    def _init_mouth(self, p: np.ndarray, iod: float) -> None:
        jaw = p[JAW]
        top = p[48:55, 1].min() - 0.33 * iod
        bottom = p[8, 1] + 0.7 * iod
        self._mroi = roi = Roi(jaw[2:15, 0].min() - 0.1 * iod, top - 4, jaw[2:15, 0].max() + 0.1 * iod, bottom + 4)
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
        # Source knots (upper lip, inner edges, lower lip, chin) per column, then the lip and jaw profiles.
        self._m_table = np.stack(
            [outer_up, inner_up, inner_lo, outer_lo, chin, np.zeros_like(cols), np.zeros_like(cols)]
        )
        self._m_top, self._m_bottom = top, bottom
        self._mouth_w = float(corners[1, 0] - corners[0, 0])
        self._cx = float(p[[60, 64], 0].mean())
        self._hw = float(max(p[64, 0] - p[60, 0], 0.5 * self._mouth_w) / 2)
        self._my = float(p[[48, 54, 60, 64], 1].mean())
        self._open_max = 0.36 * self._mouth_w
        half_face = max((jaw[12, 0] - jaw[4, 0]) / 2, 1.0)
        self._m_table[5] = np.clip(1 - ((cols - self._cx) / (self._mouth_w / 2)) ** 2, 0, 1)  # lips pout
        self._m_table[6] = np.clip(1 - ((cols - p[8, 0]) / half_face) ** 2, 0, 1) ** 0.6  # jaw drops
        self.painter = MouthPainter(self._cx, self._hw, 0.13 * self._mouth_w, self.light)

    def _mouth_knots(self, pose: Pose, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Output and source knots per (source) column, and the lip-gap profile."""
        uo, su, sl, lb, c, lip, jaw = sample(self._m_table, cols - self._mroi.x0)
        prof = unit(1 - ((cols - self._cx) / self._hw) ** 2) ** 0.55
        gap = self._open_max * pose.open * prof
        mid = (su + sl) / 2
        k_out = np.empty((7, cols.size), np.float32)
        k_src = np.empty((7, cols.size), np.float32)
        k_out[[0, -1]] = k_src[[0, -1]] = [[self._m_top], [self._m_bottom]]
        k_src[1:6] = uo, su, sl, lb, c
        k_out[2] = su_o = mid - UPPER_SHARE * gap
        k_out[3] = sl_o = mid + (1.0 - UPPER_SHARE) * gap
        pout = pose.round * 0.03 * self.iod * lip
        k_out[1] = uo + (su_o - su) - pout
        k_out[4] = lb_o = lb + (sl_o - sl) + pout
        k_out[5] = np.maximum(c + 0.8 * self._open_max * pose.open * jaw, lb_o + 2.0)
        return k_out, k_src, gap

    def _warp_mouth(self, pose: Pose, shift: np.ndarray) -> tuple[_Gap, list[Patch]]:
        """The mouth/jaw displacement inside the mouth region.

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
        patches = [Patch(roi.y0, roi.x0, 1, ramps(y, k_out, k_src))]
        if k != 0.0:
            fy = np.exp(-(((y - self._my) / (0.34 * self._mouth_w)) ** 2))
            # Rows where the squeeze is under 1e-8 of a mouth would add less than the maps' float32 can hold.
            rows = np.flatnonzero(fy[:, 0] > 1e-8)
            fy = fy[rows[0] : rows[-1] + 1].astype(np.float32)
            patches.append(Patch(roi.y0 + int(rows[0]), roi.x0, 0, np.multiply(fy, -shift_x.astype(np.float32))))
        return _Gap(col=col, y=y, top=k_out[2], bottom=k_out[3], gap=gap), patches

    # --- drawing ------------------------------------------------------------

    def draw(self, pose: Pose) -> np.ndarray:
        map_x, map_y, gap = self._maps(pose)
        strokes = self.painter.plan(
            gap.col, gap.y, gap.top, gap.bottom, pose.tongue
        )  # before the remap sweeps the cache
        frame = self.base.copy()
        for rows, cols in self._strips:
            dst = frame[rows, cols]
            cv2.remap(self.base, map_x[rows, cols], map_y[rows, cols], cv2.INTER_LINEAR, dst, cv2.BORDER_REPLICATE)
        strokes.apply(frame[self._mroi.slice])
        return frame

    def _maps(self, pose: Pose) -> tuple[np.ndarray, np.ndarray, _Gap]:
        """This frame's backward map (in the thread's buffers, so valid until its next frame) and lip gap."""
        map_x, map_y = self._head_map(pose)
        cy, cx = int(self._my), int(self._cx)
        shift = np.array([cx - map_x[cy, cx], cy - map_y[cy, cx]])
        gap, patches = self._warp_mouth(pose, shift)
        patches += self._brows.warp(pose, shift)
        patches += self._eyes.warp(pose, shift)
        for y0, x0, axis, d in patches:
            (map_x, map_y)[axis][y0 : y0 + d.shape[0], x0 : x0 + d.shape[1]] += d
        return map_x, map_y, gap

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
