"""The latency HUD never covers the replica's face: the tile moves aside for it (offscreen Qt, real frames)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QApplication

from app.replica import Replica
from app.ui.hud import HudModel
from app.ui.widgets.video import VideoView


@pytest.fixture(scope="module")
def view():
    app = QApplication.instance() or QApplication([])
    v = VideoView(HudModel())
    v.set_frame(Replica.from_assets().render(10**12).image)
    yield v
    v.deleteLater()
    app.processEvents()


def face_rect(view: VideoView) -> QRectF:
    """The replica's face (brows to chin, jaw to jaw) where the tile shows it."""
    rep = Replica.from_assets()
    p = rep.landmarks
    (x0, y0), (x1, y1) = p.min(0), p.max(0)
    tile = view.tile_rect()
    k = tile.width() / rep.size[0]
    return QRectF(tile.left() + x0 * k, tile.top() + y0 * k, (x1 - x0) * k, (y1 - y0) * k)


@pytest.mark.parametrize("size", [(900, 700), (1280, 720), (700, 700)])
def test_the_hud_sits_beside_the_face(view: VideoView, size: tuple[int, int]) -> None:
    view.resize(*size)
    view.grab()  # paint once, as the window would (the HUD's image is made on the first paint)
    assert view.hud_visible
    assert not QRectF(view.hud_rect()).intersects(face_rect(view))
    assert view.tile_side() >= min(0.6 * (min(size) - 24), 280)


def test_hiding_the_hud_gives_the_tile_its_room_back(view: VideoView) -> None:
    view.resize(900, 700)
    sides: list[int] = []
    view.tile_resized.connect(sides.append)
    beside = view.tile_side()
    assert view.toggle_hud() is False
    assert sides[-1] == view.tile_side() > beside
    centre = view.tile_rect().center().x()
    assert abs(centre - view.width() / 2) <= 1
    shot = view.grab().toImage()
    assert not shot.isNull() and np.isfinite(view.tile_side())
    assert view.toggle_hud() is True and sides[-1] == beside
