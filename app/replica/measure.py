"""Measure the talking replica from its pixels, the way a viewer would see it.

MediaPipe's face mesh (app/replica/mesh.py) is run on every rendered frame,
so the numbers know nothing of the animation parameters: how far the lips are
apart, how wide the mouth is, how open the eyes are and whether the face is
still the same shape as the photo's. They are then set against the audio
(its loudness envelope) and Piper's phoneme timing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.engines import SpeechChunk
from app.replica.mesh import EYE_CORNERS, FaceMesh, roi_from_mesh
from app.replica.replica import Replica

T0 = 10**12
LEAD_S, TAIL_S = 0.5, 0.8
_UPPER_INNER, _LOWER_INNER = [82, 13, 312], [87, 14, 317]
_CORNERS = (61, 291)
ROUNDED = frozenset("oʊuw") | {"ɔ"}
SPREAD = frozenset("iɪeɛ")
BILABIAL = frozenset("mbp")
_STRESS = frozenset("ˈˌːˑ")
CLOSED_MARGIN = 0.025  # a gap this much (in eye distances) above the closed rest pose still counts as closed


@dataclass(frozen=True)
class Series:
    """Per-frame measurements; lengths in inter-ocular distances of the rest face."""

    t: np.ndarray  # seconds from the clip's start
    gap: np.ndarray  # inner lips apart
    width: np.ndarray  # mouth corner to corner
    eyes: np.ndarray  # lid to lid, both eyes' mean
    shape: np.ndarray  # mean distance of all 468 vertices to the photo's, after aligning (identity)


class PixelMeter:
    """Runs the mesh on frames of one replica, with the crop fixed where its face rests."""

    def __init__(self, mesh: FaceMesh, replica: Replica) -> None:
        self.mesh = mesh
        source = mesh.fit(replica.face.image)
        if source is None:
            raise ValueError("the face mesh finds no face in the replica's own photo")
        self.roi = roi_from_mesh(source.mesh)
        self.iod = source.iod
        self.source = source.mesh
        rest = self.frame(replica.render(T0 - 10**9).image)
        self.rest_gap, self.rest_eyes = rest[0], rest[2]

    def frame(self, image: np.ndarray, eyes: bool = True) -> tuple[float, float, float, float]:
        """(gap, width, eye opening, shape distance) of one frame; the eyes cost two more model runs."""
        pts, _ = self.mesh.mesh_at(image, *self.roi)
        gap = float(np.mean(np.hypot(*(pts[_LOWER_INNER] - pts[_UPPER_INNER]).T)))
        width = float(np.hypot(*(pts[_CORNERS[1]] - pts[_CORNERS[0]])))
        opening = float(np.mean([_lid_gap(self.mesh, image, pts, i) for i in (0, 1)])) if eyes else 0.0
        return gap / self.iod, width / self.iod, opening / self.iod, _procrustes(pts, self.source) / self.iod

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


def lip_metrics(series: Series, speech: Speech, rest_gap: float) -> dict[str, float]:
    """Opening vs loudness, A/V offset, rounding vs spreading, bilabial closures, closure in silence."""
    fps = 1.0 / float(series.t[1] - series.t[0])
    env = envelope(speech, series.t)
    span = (series.t >= LEAD_S - 0.2) & (series.t <= speech.end_s + 0.3)
    gap, loud = series.gap[span], env[span]
    lags = np.arange(-round(0.2 * fps), round(0.2 * fps) + 1)
    corr = [_pearson(np.roll(gap, -k)[abs(k) : gap.size - abs(k)], loud[abs(k) : gap.size - abs(k)]) for k in lags]
    best = int(np.argmax(corr))
    rounded, spread = _frames_in(series, speech, ROUNDED), _frames_in(series, speech, SPREAD)
    bilabial = _frames_in(series, speech, BILABIAL, core=0.6)
    closed = series.gap <= rest_gap + CLOSED_MARGIN
    late = _closure_delays(series, env, closed, speech)
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
    """For each silence of 150 ms or more after speech: seconds until the lips are closed and stay so."""
    quiet = env < 0.03 * np.percentile(env, 99)
    fps = 1.0 / float(series.t[1] - series.t[0])
    out = []
    i = int(np.searchsorted(series.t, LEAD_S))
    while i < series.t.size:
        if quiet[i] and not quiet[i - 1]:
            j = i
            while j < series.t.size and quiet[j]:
                j += 1
            if (j - i) / fps >= 0.15:
                window = closed[i : min(j, i + round(0.3 * fps))]
                open_after = np.nonzero(~window)[0]
                out.append(0.0 if open_after.size == 0 else (open_after[-1] + 1) / fps)
            i = j
        i += 1
    return out


def blink_rate(series: Series, rest_eyes: float) -> float:
    """Blinks per minute: the lids closing below 40 % of their rest opening."""
    shut = series.eyes < 0.4 * rest_eyes
    starts = np.count_nonzero(shut[1:] & ~shut[:-1])
    return 60.0 * starts / max(float(series.t[-1] - series.t[0]), 1e-9)
