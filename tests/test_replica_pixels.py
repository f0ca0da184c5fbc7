"""The replica speaking, judged from its pixels: the face mesh runs on rendered frames (app/replica/measure.py).

Piper speaks for real (deterministic), the mesh measures for real; nothing
reads the animation parameters. Speed is the bench's business, not these tests'.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.core.engines import SpeechChunk
from app.replica import Replica, measure
from app.replica.bench import SENTENCE, lips, moved_portrait
from app.replica.mesh import FaceMesh, load_face_mesh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    model = load_face_mesh()
    assert model is not None
    return model


@pytest.fixture(scope="module")
def chunks() -> list[SpeechChunk]:
    from app.engines.tts_piper import PiperTts
    from app.model_registry import resolve

    return list(PiperTts(resolve("voice"), deterministic=True).synthesize(SENTENCE))


@pytest.fixture(scope="module")
def default_lips(mesh, chunks) -> dict:
    return lips(mesh, Replica.from_assets(seed=2), chunks, fps=50.0)


def test_the_mouth_opens_with_the_voice_and_in_time(default_lips: dict) -> None:
    assert default_lips["open_envelope_r"] >= 0.75
    assert abs(default_lips["av_offset_ms"]) <= 40.0
    assert default_lips["open_max"] > 0.08  # visibly open: 8 % of the eye distance above the closed rest


def test_rounded_vowels_are_narrower_than_spread_ones(default_lips: dict) -> None:
    assert default_lips["rounded_frames"] > 10 and default_lips["spread_frames"] > 10
    assert default_lips["round_spread_width_ratio"] <= 0.85


def test_lips_close_on_m_b_p_and_in_every_silence(default_lips: dict) -> None:
    assert default_lips["bilabial_frames"] >= 8
    assert default_lips["bilabial_closed"] >= 0.95
    assert default_lips["silences"] >= 3
    assert default_lips["silences_closed_by_100ms"] == 1.0


def test_the_speaking_face_stays_the_same_person(default_lips: dict) -> None:
    assert default_lips["identity_median"] < 0.04  # mesh shape within 4 % of the eye distance of the photo's


def test_a_replica_from_a_photo_speaks_as_well(mesh, chunks) -> None:
    photo, _ = moved_portrait((1.0, 10.0, (30, 60), 2.2))
    m = lips(mesh, Replica.from_image(photo, seed=2), chunks, fps=50.0)
    assert m["open_envelope_r"] >= 0.75 and m["bilabial_closed"] >= 0.95 and m["round_spread_width_ratio"] <= 0.85


def test_blinks_are_seen_in_the_pixels(mesh) -> None:
    rep = Replica.from_assets(seed=5)
    meter = measure.PixelMeter(mesh, rep)
    series = meter.series(rep, 12.0, 15.0, start_ns=measure.T0, eyes=True)
    scheduled = len(rep.blink_times(measure.T0, measure.T0 + 12 * 10**9))
    seen = measure.blink_rate(series, meter.rest_eyes) * 12.0 / 60.0
    assert scheduled >= 2 and abs(seen - scheduled) <= 1
    assert np.min(series.eyes) < 0.4 * meter.rest_eyes


def _mouth_column(rig, pose) -> np.ndarray:
    """Luma down the middle of the mouth, from the nose to the chin, in one rendered frame."""
    import cv2

    frame = rig.draw(pose)
    x = round(rig._cx)
    y0, y1 = round(rig._my - 0.3 * rig.iod), round(rig._my + 0.5 * rig.iod)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[y0:y1, x - 2 : x + 3].mean(axis=1), y0


def test_upper_teeth_stay_with_the_skull_and_lower_teeth_go_with_the_jaw() -> None:
    from app.replica.rig import Pose

    rig = Replica.from_assets()._rig
    edges = {}
    for opening in (0.6, 1.0):
        luma, y0 = _mouth_column(rig, Pose(open=opening))
        dark = np.nonzero(luma < 60)[0]
        assert dark.size > 3, "an open mouth shows its dark cavity"
        teeth_edge = dark[0] - 1  # the last bright row above the cavity: the upper teeth's edge
        assert luma[teeth_edge - 2 : teeth_edge + 1].mean() > 120
        edges[opening] = (y0 + teeth_edge, y0 + dark[-1])
    assert abs(edges[1.0][0] - edges[0.6][0]) <= 1  # upper teeth: fixed
    assert edges[1.0][1] - edges[0.6][1] >= 3  # the cavity's floor (lower teeth, jaw) drops


def test_the_tongue_tip_shows_on_th() -> None:
    from app.replica.rig import Pose

    rig = Replica.from_assets()._rig
    x0, y0, x1, y1 = rig.mouth_box
    red = []
    for tongue in (0.0, 1.0):
        frame = rig.draw(Pose(open=0.45, tongue=tongue))[y0:y1, x0:x1].astype(np.int32)
        g, r = frame[..., 1], frame[..., 2]
        red.append(int(((r - g > 50) & (r > 110)).sum()))
    assert red[1] > red[0] + 20


def test_brows_rise_for_questions_and_blinks_come_at_pauses(default_lips: dict) -> None:
    assert default_lips["brow_lift_questions"] > default_lips["brow_lift_statements"] + 0.02
    assert default_lips["blinks_in_speech"] >= 2
    assert default_lips["blinks_at_pauses"] >= 0.75
