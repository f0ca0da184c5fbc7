"""Measure the talking replica from its pixels, the way a viewer would see it.

MediaPipe's face mesh (app/replica/mesh.py) is run on every rendered frame,
so the numbers know nothing of the animation parameters: how far the lips are
apart, how wide the mouth is, how open the eyes are and whether the face is
still the same shape as the photo's. They are then set against the audio
(its loudness envelope) and Piper's phoneme timing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.core.engines import SpeechChunk
from app.replica.mesh import EYE_CORNERS, FaceMesh, roi_from_mesh
from app.replica.replica import Replica

T0 = 10**12
LEAD_S, TAIL_S = 0.5, 0.8
_UPPER_INNER, _LOWER_INNER = [82, 13, 312], [87, 14, 317]
_CORNERS = (61, 291)
_BROWS = [105, 66, 334, 296]  # the middle of each brow
ROUNDED = frozenset("oʊuw") | {"ɔ"}
SPREAD = frozenset("iɪeɛ")
BILABIAL = frozenset("mbp")
_STRESS = frozenset("ˈˌːˑ")
_PAUSES = frozenset(" ^$.,?!;:")
# The iris model's lids stop short of a shut eye: rendered blinks read 31-60 % of the open eye's height on
# the three bench faces (the default portrait, a dark photo, a face with glasses), open eyes 95-105 %.
BLINK_SHUT = 0.65
CLOSED_MARGIN = 0.025  # a gap this much (in eye distances) above the closed rest pose still counts as closed


@dataclass(frozen=True)
class Series:
    """Per-frame measurements; lengths in inter-ocular distances of the rest face."""

    t: np.ndarray  # seconds from the clip's start
    gap: np.ndarray  # inner lips apart
    width: np.ndarray  # mouth corner to corner
    eyes: np.ndarray  # lid to lid, both eyes' mean
    shape: np.ndarray  # mean distance of all 468 vertices to the photo's, after aligning (identity)
    brow: np.ndarray  # brows above the line through the eye corners


class PixelMeter:
    """Runs the mesh on frames of one replica, with the crop fixed where its face rests."""

    def __init__(self, mesh: FaceMesh, replica: Replica) -> None:
        self.mesh = mesh
        source = mesh.fit(replica.face.image)
        if source is None:
            raise ValueError("the face mesh finds no face in the replica's own photo")
        self.roi = roi_from_mesh(source.mesh)
        # The crop follows the head (phase correlation of the eyes and nose against the photo), so a nod
        # does not move the face inside the mesh's crop.
        upper = source.mesh[source.mesh[:, 1] < source.mesh[4, 1]]
        (x0, y0), (x1, y1) = upper.min(0).astype(int), upper.max(0).astype(int)
        self._track_box = (x0, y0, x1 - x0, y1 - y0)
        self._track_ref = self._patch(replica.face.image)
        self._brow_at = source.mesh[_BROWS]  # where each brow is in the photo
        self._brow_patches: list[tuple[int, int, float, np.ndarray]] = []
        self.iod = source.iod
        self.source = source.mesh
        at = T0 - 10**9
        while replica.blink_times(at - 400_000_000, at + 100_000_000):  # the rest frame has open eyes
            at -= 500_000_000
        rest = self.frame(replica.render(at).image)
        self.rest_gap, self.rest_eyes, self.rest_brow = rest[0], rest[2], rest[4]
        # How much the measured gap of a closed, idle mouth wanders (head sway, breathing, the mesh's own
        # noise): "closed" allows that much, and never less than CLOSED_MARGIN.
        idle = [self.frame(replica.render(at - k * 370_000_000).image, eyes=False)[0] for k in range(1, 13)]
        self.closed_margin = max(CLOSED_MARGIN, 1.5 * float(np.max(np.abs(np.array(idle) - self.rest_gap))))

    def frame(self, image: np.ndarray, eyes: bool = True) -> tuple[float, ...]:
        """(gap, width, eye opening, shape distance, brow height) of one frame; eyes cost two more model runs."""
        centre, side, angle = self.roi
        pts, _ = self.mesh.mesh_at(image, centre + self._head_shift(image), side, angle)
        gap = float(np.mean(np.hypot(*(pts[_LOWER_INNER] - pts[_UPPER_INNER]).T)))
        width = float(np.hypot(*(pts[_CORNERS[1]] - pts[_CORNERS[0]])))
        opening = float(np.mean([_lid_gap(self.mesh, image, pts, i) for i in (0, 1)])) if eyes else 0.0
        corners = np.vstack([pts[list(EYE_CORNERS[0])], pts[list(EYE_CORNERS[1])]])
        brow = float(np.mean(corners[:, 1])) - self._brow_row(image)  # the mesh hardly moves its brows
        shape = _procrustes(pts, self.source)
        return gap / self.iod, width / self.iod, opening / self.iod, shape / self.iod, brow / self.iod

    def _patch(self, image: np.ndarray) -> np.ndarray:
        x, y, w, h = self._track_box
        return np.float32(cv2.cvtColor(image[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY))

    def _head_shift(self, image: np.ndarray) -> np.ndarray:
        (dx, dy), _ = cv2.phaseCorrelate(self._track_ref, self._patch(image))
        return np.array([dx, dy])

    def _brow_row(self, image: np.ndarray) -> float:
        """Mean row of the brows, tracked from the rest frame by matching each brow's patch (pixels only)."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if not self._brow_patches:  # the first frame measured is the rest frame: keep its patches
            for x, y in self._brow_at:
                x0, y0 = int(x - 0.2 * self.iod), int(y - 0.08 * self.iod)
                patch = gray[y0 : y0 + int(0.16 * self.iod), x0 : x0 + int(0.4 * self.iod)].copy()
                self._brow_patches.append((x0, y0, y, patch))
        rows = []
        reach = int(0.15 * self.iod)
        for x0, y0, y, patch in self._brow_patches:
            area = gray[y0 - reach : y0 + patch.shape[0] + reach, x0 : x0 + patch.shape[1]]
            score = cv2.matchTemplate(area, patch, cv2.TM_CCOEFF_NORMED)[:, 0]
            i = int(np.argmax(score))
            if 0 < i < score.size - 1:  # sub-pixel: the vertex of the parabola through the best three
                a, b, c = score[i - 1 : i + 2]
                den = a - 2 * b + c
                i += 0.5 * (a - c) / den if abs(den) > 1e-9 else 0.0
            rows.append(y + i - reach)
        return float(np.mean(rows))

    def series(self, replica: Replica, seconds: float, fps: float, start_ns: int = T0, eyes: bool = False) -> Series:
        t = np.arange(int(seconds * fps)) / fps
        rows = np.array([self.frame(replica.render(start_ns + round(x * 1e9)).image, eyes) for x in t])
        return Series(t, *rows.T)


def _lid_gap(mesh: FaceMesh, image: np.ndarray, pts: np.ndarray, which: int) -> float:
    """Lid to lid across the eye, from the iris model's lid contour (the mesh's barely sees a blink)."""
    _, lids = mesh.eye_at(image, pts, which)
    a, b = pts[list(EYE_CORNERS[which])]
    normal = np.array([a[1] - b[1], b[0] - a[0]]) / max(float(np.hypot(*(b - a))), 1e-9)
    across = (lids - a) @ normal
    return float(across.max() - across.min())


def _procrustes(a: np.ndarray, b: np.ndarray) -> float:
    """Mean vertex distance once a is moved, turned and scaled onto b (head motion is not identity)."""
    a0, b0 = a - a.mean(0), b - b.mean(0)
    u, s, vt = np.linalg.svd(a0.T @ b0)
    rot = u @ vt
    scale = s.sum() / max((a0**2).sum(), 1e-9)
    return float(np.mean(np.hypot(*(scale * a0 @ rot - b0).T)))


@dataclass(frozen=True)
class Speech:
    """A spoken clip laid on the timeline: its audio from t=0 and its phoneme spans in seconds."""

    audio: np.ndarray
    sample_rate: int
    phonemes: list[tuple[str, float, float]]
    end_s: float


def push(replica: Replica, chunks: list[SpeechChunk], start_ns: int = T0) -> Speech:
    """Queue the chunks back to back after a lead-in; return the heard audio and phoneme spans."""
    sr = chunks[0].sample_rate
    t = LEAD_S
    spans: list[tuple[str, float, float]] = []
    pieces = [np.zeros(round(LEAD_S * sr), np.float32)]
    for chunk in chunks:
        replica.push_audio(chunk, start_ns + round(t * 1e9))
        pending = None
        for p in chunk.phonemes:
            a, b = t + p.start / sr, t + (p.start + p.length) / sr
            if p.phoneme in _STRESS:
                pending = a if pending is None else pending
                if spans and p.phoneme in "ːˑ":
                    spans[-1] = (spans[-1][0], spans[-1][1], b)
                continue
            spans.append((p.phoneme, a if pending is None else pending, b))
            pending = None
        pieces.append(chunk.audio.astype(np.float32))
        t += len(chunk.audio) / sr
    pieces.append(np.zeros(round(TAIL_S * sr), np.float32))
    return Speech(np.concatenate(pieces), sr, spans, t)


def envelope(speech: Speech, t: np.ndarray, window_s: float = 0.03) -> np.ndarray:
    """RMS loudness heard in a window centred on each instant."""
    sq = np.concatenate([[0.0], np.cumsum(speech.audio.astype(np.float64) ** 2)])
    half = window_s * speech.sample_rate / 2
    lo = np.clip(np.round(t * speech.sample_rate - half), 0, len(speech.audio)).astype(int)
    hi = np.clip(np.round(t * speech.sample_rate + half), 0, len(speech.audio)).astype(int)
    return np.sqrt((sq[hi] - sq[lo]) / np.maximum(hi - lo, 1))


def _frames_in(series: Series, speech: Speech, symbols: frozenset[str], core: float = 0.5) -> np.ndarray:
    """Frames in the central ``core`` fraction of the spans of the given phonemes."""
    mask = np.zeros(series.t.size, bool)
    for sym, a, b in speech.phonemes:
        if sym in symbols:
            pad = (b - a) * (1 - core) / 2
            mask |= (series.t >= a + pad) & (series.t <= b - pad)
    return mask


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1]) if x.size > 2 and x.std() > 0 and y.std() > 0 else 0.0


def lip_metrics(
    series: Series, speech: Speech, rest_gap: float, margin: float = CLOSED_MARGIN, rest_eyes: float = 0.0
) -> dict[str, float]:
    """Opening vs loudness, A/V offset, rounding vs spreading, bilabial closures, closure in silence.

    With the eyes measured (``rest_eyes``), frames of a blink are left out of the silence check: the mesh
    is one model of the whole face, and shut eyes move its lip points by a few pixels.
    """
    fps = 1.0 / float(series.t[1] - series.t[0])
    env = envelope(speech, series.t)
    span = (series.t >= LEAD_S - 0.2) & (series.t <= speech.end_s + 0.3)
    gap, loud = series.gap[span], env[span]
    lags = np.arange(-round(0.2 * fps), round(0.2 * fps) + 1)
    corr = [_pearson(np.roll(gap, -k)[abs(k) : gap.size - abs(k)], loud[abs(k) : gap.size - abs(k)]) for k in lags]
    best = int(np.argmax(corr))
    rounded, spread = _frames_in(series, speech, ROUNDED), _frames_in(series, speech, SPREAD)
    bilabial = _frames_in(series, speech, BILABIAL, core=0.6)
    closed = series.gap <= rest_gap + margin
    blinking = series.eyes < BLINK_SHUT * rest_eyes
    late = _closure_delays(series, env, closed | blinking, speech)
    return {
        "open_envelope_r": _pearson(gap, loud),
        "open_envelope_r_best": float(corr[best]),
        "av_offset_ms": float(1000.0 * lags[best] / fps),  # > 0: the mouth moves after the sound
        "round_spread_width_ratio": float(np.median(series.width[rounded]) / np.median(series.width[spread])),
        "rounded_frames": int(rounded.sum()),
        "spread_frames": int(spread.sum()),
        "bilabial_closed": float(closed[bilabial].mean()) if bilabial.any() else float("nan"),
        "bilabial_frames": int(bilabial.sum()),
        "silences": len(late),
        "silences_closed_by_100ms": float(np.mean([d <= 0.1 for d in late])) if late else float("nan"),
        "worst_closure_ms": 1000.0 * max(late) if late else float("nan"),
        "open_max": float(series.gap.max() - rest_gap),
    }


def _closure_delays(series: Series, env: np.ndarray, closed: np.ndarray, speech: Speech) -> list[float]:
    """For each silence of 150 ms or more after speech: seconds until the lips are closed and stay so.

    The last 100 ms of a silence are left out: lips part before the next word's sound, as they should.
    """
    quiet = env < 0.03 * np.percentile(env, 99)
    for sym, a, b in speech.phonemes:  # a soft sound Piper says is there (the d of "Joe") is not a silence
        if sym not in _PAUSES:
            quiet &= (series.t < a) | (series.t >= b)
    fps = 1.0 / float(series.t[1] - series.t[0])
    out = []
    i = int(np.searchsorted(series.t, LEAD_S))
    while i < series.t.size:
        if quiet[i] and not quiet[i - 1]:
            j = i
            while j < series.t.size and quiet[j]:
                j += 1
            if (j - i) / fps >= 0.15:
                window = closed[i : min(j - round(0.1 * fps), i + round(0.3 * fps))]
                open_after = np.nonzero(~window)[0]
                out.append(0.0 if open_after.size == 0 else (open_after[-1] + 1) / fps)
            i = j
        i += 1
    return out


def blink_rate(series: Series, rest_eyes: float) -> float:
    """Blinks per minute: the lids closing below BLINK_SHUT of their rest opening."""
    starts = _blink_starts(series, rest_eyes).size
    return 60.0 * starts / max(float(series.t[-1] - series.t[0]), 1e-9)


def _blink_starts(series: Series, rest_eyes: float) -> np.ndarray:
    """When the lids close below BLINK_SHUT, counted once until they are open again (85 % of rest)."""
    starts, armed = [], True
    for t, eyes in zip(series.t, series.eyes, strict=True):
        if armed and eyes < BLINK_SHUT * rest_eyes:
            starts.append(t)
            armed = False
        elif eyes > 0.85 * rest_eyes:
            armed = True
    return np.array(starts)


def prosody_metrics(series: Series, speech: Speech, rest_eyes: float, rest_brow: float) -> dict[str, float]:
    """Brows at the end of questions vs statements, and how many blinks fall at the pauses."""
    ends = _sentence_ends(speech)
    lifts = {"?": [], ".": []}
    for mark, at in ends:
        near = (series.t >= at - 0.35) & (series.t < at)
        if mark in lifts and near.any():
            lifts[mark].append(float(np.median(series.brow[near])) - rest_brow)
    starts = _blink_starts(series, rest_eyes)
    pauses = np.array([at for _, at in ends] + [p[1] for p in speech.phonemes if p[0] == ","])
    at_pause = [bool(pauses.size) and float(np.min(np.abs(pauses - s))) <= 0.3 for s in starts]
    return {
        "brow_lift_questions": float(np.mean(lifts["?"])) if lifts["?"] else float("nan"),
        "brow_lift_statements": float(np.mean(lifts["."])) if lifts["."] else float("nan"),
        "blinks_in_speech": len(starts),
        "blinks_at_pauses": float(np.mean(at_pause)) if at_pause else float("nan"),
    }


def _sentence_ends(speech: Speech) -> list[tuple[str, float]]:
    return [(sym, a) for sym, a, _ in speech.phonemes if sym in ".?!"]
