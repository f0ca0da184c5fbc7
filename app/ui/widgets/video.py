"""The call view: the replica big, the user's camera small, the HUD and a name tag on top.

Everything is painted in one ``paintEvent`` from the newest frames (numpy BGR
arrays wrapped as QImage without a copy), so a repaint costs one scaled
image draw plus a few shapes.  Frames arrive through a ``FrameBridge``; this
widget only takes the newest one when the GUI thread gets to it.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.ui.hud import HudModel, paint_hud

BACKGROUND = QColor(14, 17, 22)
TILE = QColor(24, 28, 35)
STATE_COLOURS = {
    "idle": QColor(130, 138, 150),
    "listening": QColor(90, 200, 130),
    "thinking": QColor(240, 185, 80),
    "speaking": QColor(90, 160, 255),
    "muted": QColor(235, 95, 90),
    "push_to_talk": QColor(130, 138, 150),
    "away": QColor(130, 138, 150),
}
STATE_LABELS = {
    "idle": "Ready",
    "listening": "Listening",
    "thinking": "Thinking",
    "speaking": "Speaking",
    "muted": "Mic muted",
    "push_to_talk": "Hold Space to talk",
    "away": "Paused: nobody here",
}


def to_qimage(image: np.ndarray) -> QImage:
    """Wrap a BGR uint8 array (no copy: the caller keeps the array alive while the image is used)."""
    if not image.flags["C_CONTIGUOUS"]:
        image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    return QImage(image.data, w, h, image.strides[0], QImage.Format.Format_BGR888)


class VideoView(QWidget):
    """Replica frames, camera picture-in-picture, HUD, state tag and a centred notice."""

    def __init__(self, hud: HudModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hud = hud
        self.hud_visible = True
        self.state = "idle"
        self.persona = "Replica"
        self.notice = ""  # e.g. "Loading models…"
        self.progress: float | None = None
        self.preview_note = "Camera off"
        self.frames_shown = 0
        self.paint_ms: deque[float] = deque(maxlen=4000)  # time spent in paintEvent
        self.paint_at: deque[float] = deque(maxlen=4000)  # perf_counter at each paint
        self._frame: tuple[np.ndarray, QImage] | None = None
        self._preview: tuple[np.ndarray, QImage] | None = None
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(QSize(360, 300))

    # --- inputs (GUI thread) -------------------------------------------------------

    def set_frame(self, image: np.ndarray) -> None:
        self._frame = (image, to_qimage(image))
        self.frames_shown += 1
        self.update()

    def set_preview(self, image: np.ndarray | None) -> None:
        self._preview = None if image is None else (image, to_qimage(image))
        self.update()

    def set_state(self, state: str) -> None:
        self.state = state
        self.update()

    def set_notice(self, text: str, progress: float | None = None) -> None:
        self.notice, self.progress = text, progress
        self.update()

    def toggle_hud(self) -> bool:
        self.hud_visible = not self.hud_visible
        self.update()
        return self.hud_visible

    @property
    def has_frame(self) -> bool:
        return self._frame is not None

    def replica_rect(self) -> QRectF:
        side = min(self.width() - 24, self.height() - 24)
        return QRectF((self.width() - side) / 2, (self.height() - side) / 2, side, side)

    # --- painting ----------------------------------------------------------------------

    def paintEvent(self, _event: QPaintEvent) -> None:
        started = time.perf_counter()
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        tile = self.replica_rect()
        clip = QPainterPath()
        clip.addRoundedRect(tile, 18, 18)
        p.save()
        p.setClipPath(clip)
        if self._frame is not None:
            p.drawImage(tile, self._frame[1])
        else:
            p.fillRect(tile, TILE)
        p.restore()
        colour = STATE_COLOURS.get(self.state, STATE_COLOURS["idle"])
        p.setPen(QPen(QColor(colour.red(), colour.green(), colour.blue(), 150), 2.5))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRoundedRect(tile, 18, 18)
        self._paint_tag(p, tile, colour)
        self._paint_preview(p)
        if self.notice:
            self._paint_notice(p, tile)
        if self.hud_visible:
            scale = max(0.8, min(1.2, self.height() / 700))
            paint_hud(p, QPointF(16, 16), self.hud, scale)
        p.end()
        self.paint_at.append(started)
        self.paint_ms.append((time.perf_counter() - started) * 1000)

    def _paint_tag(self, p: QPainter, tile: QRectF, colour: QColor) -> None:
        font = QFont(self.font())
        font.setPixelSize(15)
        font.setBold(True)
        p.setFont(font)
        fm = QFontMetricsF(font)
        text = f"{self.persona}  ·  {STATE_LABELS.get(self.state, self.state)}"
        w, h = fm.horizontalAdvance(text) + 40, fm.height() + 14
        box = QRectF(tile.left() + 14, tile.bottom() - h - 14, w, h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, h / 2, h / 2)
        p.setBrush(colour)
        p.drawEllipse(QPointF(box.left() + 16, box.center().y()), 5, 5)
        p.setPen(QColor(240, 244, 248))
        p.drawText(box.adjusted(28, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)

    def _paint_preview(self, p: QPainter) -> None:
        w = max(120.0, min(240.0, self.width() * 0.2))
        h = w * 3 / 4
        box = QRectF(self.width() - w - 16, self.height() - h - 16, w, h)
        clip = QPainterPath()
        clip.addRoundedRect(box, 10, 10)
        p.save()
        p.setClipPath(clip)
        if self._preview is not None:
            p.drawImage(box, self._preview[1])
        else:
            p.fillRect(box, QColor(32, 37, 46))
            p.setPen(QColor(150, 158, 170))
            font = QFont(self.font())
            font.setPixelSize(12)
            p.setFont(font)
            p.drawText(
                box.adjusted(8, 8, -8, -8), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.preview_note
            )
        p.restore()
        p.setPen(QPen(QColor(255, 255, 255, 60), 1.2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRoundedRect(box, 10, 10)

    def _paint_notice(self, p: QPainter, tile: QRectF) -> None:
        font = QFont(self.font())
        font.setPixelSize(16)
        p.setFont(font)
        fm = QFontMetricsF(font)
        w = min(tile.width() - 40, fm.horizontalAdvance(self.notice) + 48)
        box = QRectF(tile.center().x() - w / 2, tile.top() + 24, w, fm.height() + 26)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 170))
        p.drawRoundedRect(box, 12, 12)
        p.setPen(QColor(235, 240, 245))
        p.drawText(box.adjusted(0, 0, 0, -6), Qt.AlignmentFlag.AlignCenter, self.notice)
        if self.progress is not None:
            track = QRectF(box.left() + 20, box.bottom() - 9, box.width() - 40, 3)
            p.setBrush(QColor(255, 255, 255, 50))
            p.drawRect(track)
            p.setBrush(QColor(90, 160, 255))
            p.drawRect(QRectF(track.left(), track.top(), track.width() * max(0.0, min(1.0, self.progress)), 3))
