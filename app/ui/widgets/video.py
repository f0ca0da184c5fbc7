"""The call view: the replica big, the user's camera small, the HUD and a name tag on top.

The GUI thread must stay light on two shared cores, so painting is mostly
blitting: replica frames arrive already scaled to the tile and in the
display's pixel format (the session does that on the replica thread), the
HUD, the name tag, the tile's rounded border and the camera placeholder are
cached images redrawn only when their content changes, each source repaints
only its own rectangle, and HUD updates are coalesced (at most ~15 a second,
none when the numbers on show are the same).  Frames arrive through a
``FrameBridge``; this widget takes the newest one when the GUI gets to it.
"""

from __future__ import annotations

import time
from collections import deque

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QRegion,
    QResizeEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.ui.hud import HudModel, paint_hud

BACKGROUND = QColor(14, 17, 22)
TILE = QColor(24, 28, 35)
RADIUS = 18.0
MARGIN = 12
HUD_LEFT = 16  # the HUD panel's left and top offset
PIP_SIZE = QSize(240, 180)
BORDER_WIDTH = 2.5
RING_OUT = 3  # the tile's border reaches this far outside the tile (pen half-width, the corner fill's 1 px)
RING_IN = 2  # and this far inside it, besides the corners
HUD_FLUSH_MS = 66  # HUD numbers are redrawn at most this often (<= 15 per second)
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
    """Wrap a BGR or BGRA uint8 array without a copy (keep the array alive while the image is used).

    BGRA is the display's own 32-bit format, so drawing it is a plain copy.
    """
    if not image.flags["C_CONTIGUOUS"]:
        image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    fmt = QImage.Format.Format_RGB32 if image.ndim == 3 and image.shape[2] == 4 else QImage.Format.Format_BGR888
    return QImage(image.data, w, h, image.strides[0], fmt)


def fit_tile(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` (BGR or BGRA) at the tile's size (0: as it is) in 32-bit BGRA; four channels scale faster."""
    if image.shape[2] != 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    if not side or side == image.shape[0]:
        return image
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA if side < image.shape[0] else cv2.INTER_LINEAR)


def _overlay(size: QSize) -> QImage:
    image = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    return image


class VideoView(QWidget):
    """Replica frames, camera picture-in-picture, HUD, state tag and a centred notice."""

    tile_resized = Signal(int)  # side of the replica tile in pixels (frames should arrive at this size)

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
        self._hud_cache: QImage | None = None
        self._tag_cache: tuple[tuple[str, str, int], QImage] | None = None
        self._corner_cache: tuple[QRectF, QPainterPath] | None = None
        self._ring_cache: tuple[tuple[float, float, int], QImage] | None = None
        self._note_cache: tuple[tuple[int, int, str], QImage] | None = None
        self._hud_key: tuple | None = None  # what the cached HUD image shows
        self._hud_timer = QTimer(self)
        self._hud_timer.setSingleShot(True)
        self._hud_timer.setInterval(HUD_FLUSH_MS)
        self._hud_timer.timeout.connect(self._refresh_hud)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(QSize(360, 300))

    # --- inputs (GUI thread) -------------------------------------------------------

    def set_frame(self, image: np.ndarray) -> None:
        self._frame = (image, to_qimage(image))
        self.frames_shown += 1
        self.update(self.tile_rect().toAlignedRect())

    def set_preview(self, image: np.ndarray | None) -> None:
        self._preview = None if image is None else (image, to_qimage(image))
        self.update(self.preview_rect().toAlignedRect().adjusted(-2, -2, 2, 2))

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.update(self.tile_rect().toAlignedRect().adjusted(-3, -3, 3, 3))

    def set_notice(self, text: str, progress: float | None = None) -> None:
        self.notice, self.progress = text, progress
        self.update()

    def hud_changed(self) -> None:
        """The HUD's numbers changed: redraw its image and its area only, at most ~15 times a second.

        Updates come in bursts (every few tokens, every audio chunk); they are coalesced, and one
        that changes nothing on show (a metric the HUD does not print) costs no redraw at all.
        """
        if not self._hud_timer.isActive():
            self._hud_timer.start()

    def _refresh_hud(self) -> None:
        if self.hud_visible and (self._hud_cache is None or self.hud.shown() != self._hud_key):
            self._hud_cache = None
            self.update(self.hud_rect())

    def toggle_hud(self) -> bool:
        self.hud_visible = not self.hud_visible
        self._hud_cache = None
        self._corner_cache = None
        self.update()
        self.tile_resized.emit(self.tile_side())  # the tile moves aside for the HUD (or takes the room back)
        return self.hud_visible

    @property
    def has_frame(self) -> bool:
        return self._frame is not None

    # --- geometry ---------------------------------------------------------------------

    def tile_side(self) -> int:
        return self._tile_layout()[0]

    def tile_rect(self) -> QRectF:
        side, left = self._tile_layout()
        return QRectF(left, (self.height() - side) // 2, side, side)

    def _tile_layout(self) -> tuple[int, int]:
        """(side, left) of the replica tile: beside the HUD when it is shown, so it never covers the face.

        Only when the window is too narrow for both (the tile would lose more than 40 % and be under
        280 px) does the HUD overlay the tile's top-left corner, as before; H hides it.
        """
        full = max(64, min(self.width(), self.height()) - 2 * MARGIN)
        if self.hud_visible:
            beside = HUD_LEFT + self.hud_rect().width() + MARGIN
            side = min(self.height() - 2 * MARGIN, self.width() - beside - MARGIN)
            if side >= min(0.6 * full, 280):
                return side, beside + (self.width() - beside - MARGIN - side) // 2
        return full, (self.width() - full) // 2

    replica_rect = tile_rect

    def preview_rect(self) -> QRectF:
        w = min(PIP_SIZE.width(), self.width() // 3)
        h = w * PIP_SIZE.height() // PIP_SIZE.width()
        return QRectF(self.width() - w - 16, self.height() - h - 16, w, h)

    def _hud_scale(self) -> float:
        return max(0.8, min(1.2, self.height() / 700))

    def hud_rect(self) -> QRect:
        cache = self._hud_cache
        if cache is not None:
            return QRect(HUD_LEFT, HUD_LEFT, cache.width(), cache.height())
        return QRect(HUD_LEFT, HUD_LEFT, int(300 * self._hud_scale()) + 1, round(520 * self._hud_scale()))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._hud_cache = None
        self.tile_resized.emit(self.tile_side())

    # --- painting ----------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        started = time.perf_counter()
        area = event.region()  # not its bounding rect: a frame and a HUD update together are two rects
        p = QPainter(self)
        tile = self.tile_rect()
        tile_px = tile.toAlignedRect()
        framed = self._frame is not None and self._frame[1].width() == tile_px.width() == tile_px.height()
        # An exact-size frame covers its tile: fill only around it (the border ring is drawn over both).
        for rect in area.subtracted(QRegion(tile_px)) if framed else area:
            p.fillRect(rect, BACKGROUND)
        if area.intersects(tile_px.adjusted(-RING_OUT, -RING_OUT, RING_OUT, RING_OUT)):
            self._paint_tile(p, tile)
        if self.notice:
            self._paint_notice(p, tile)
        if area.intersects(self.preview_rect().toAlignedRect().adjusted(-2, -2, 2, 2)):
            self._paint_preview(p)
        if self.hud_visible and area.intersects(self.hud_rect()):
            if self._hud_cache is None:
                self._hud_key = self.hud.shown()
                self._hud_cache = self._render_hud()
            p.drawImage(QPointF(HUD_LEFT, HUD_LEFT), self._hud_cache)
        p.end()
        self.paint_at.append(started)
        self.paint_ms.append((time.perf_counter() - started) * 1000)

    def _paint_tile(self, p: QPainter, tile: QRectF) -> None:
        if self._frame is None:
            p.fillRect(tile, TILE)
        else:
            image = self._frame[1]
            if image.width() == round(tile.width()):
                p.drawImage(tile.topLeft(), image)  # already at tile size: a plain copy
            else:
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
                p.drawImage(tile, image)
        colour = STATE_COLOURS.get(self.state, STATE_COLOURS["idle"])
        self._paint_ring(p, tile, colour)
        tag = self._tag_image(colour)
        p.drawImage(QPointF(tile.left() + 14, tile.bottom() - tag.height() - 14), tag)

    def _paint_ring(self, p: QPainter, tile: QRectF, colour: QColor) -> None:
        """The rounded corners and the state-coloured border, as four blits of a cached ring.

        The ring is what the corner fill and the anti-aliased border stroke would paint, drawn once
        over transparency; only its rim is blitted (two bands with the corners, two thin sides),
        so a frame costs a few small copies, not a path fill and a stroke over the whole tile.
        """
        key = (tile.width(), tile.height(), colour.rgba())
        if self._ring_cache is None or self._ring_cache[0] != key:
            self._ring_cache = (key, self._render_ring(tile, colour))
        ring = self._ring_cache[1]
        origin = tile.topLeft() - QPointF(RING_OUT, RING_OUT)
        band = RING_OUT + round(RADIUS) + RING_IN  # top and bottom bands hold the corners
        side = RING_OUT + RING_IN
        w, h = ring.width(), ring.height()
        for x, y, rw, rh in (
            (0, 0, w, band),
            (0, h - band, w, band),
            (0, band, side, h - 2 * band),
            (w - side, band, side, h - 2 * band),
        ):
            p.drawImage(origin + QPointF(x, y), ring, QRect(x, y, rw, rh))

    def _render_ring(self, tile: QRectF, colour: QColor) -> QImage:
        local = QRectF(RING_OUT, RING_OUT, tile.width(), tile.height())
        image = _overlay(QSize(round(tile.width()) + 2 * RING_OUT, round(tile.height()) + 2 * RING_OUT))
        p = QPainter(image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillPath(self._corners(local), BACKGROUND)  # round the tile: background over its corners
        p.setPen(QPen(QColor(colour.red(), colour.green(), colour.blue(), 150), BORDER_WIDTH))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRoundedRect(local, RADIUS, RADIUS)
        p.end()
        return image

    def _corners(self, tile: QRectF) -> QPainterPath:
        if self._corner_cache is None or self._corner_cache[0] != tile:
            square, rounded = QPainterPath(), QPainterPath()
            square.addRect(tile.adjusted(-1, -1, 1, 1))
            rounded.addRoundedRect(tile, RADIUS, RADIUS)
            self._corner_cache = (QRectF(tile), square.subtracted(rounded))
        return self._corner_cache[1]

    def _render_hud(self) -> QImage:
        scale = self._hud_scale()
        image = _overlay(QSize(round(320 * scale), round(520 * scale)))
        p = QPainter(image)
        p.setFont(self.font())
        panel = paint_hud(p, QPointF(0, 0), self.hud, scale)
        p.end()
        return image.copy(0, 0, int(panel.width()) + 1, int(panel.height()) + 1)

    def _tag_image(self, colour: QColor) -> QImage:
        key = (self.persona, self.state, colour.rgba())
        if self._tag_cache is not None and self._tag_cache[0] == key:
            return self._tag_cache[1]
        font = QFont(self.font())
        font.setPixelSize(15)
        font.setBold(True)
        fm = QFontMetricsF(font)
        text = f"{self.persona}  ·  {STATE_LABELS.get(self.state, self.state)}"
        w, h = fm.horizontalAdvance(text) + 40, fm.height() + 14
        image = _overlay(QSize(int(w) + 1, int(h) + 1))
        p = QPainter(image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setFont(font)
        box = QRectF(0, 0, w, h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, h / 2, h / 2)
        p.setBrush(colour)
        p.drawEllipse(QPointF(16, h / 2), 5, 5)
        p.setPen(QColor(240, 244, 248))
        p.drawText(box.adjusted(28, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
        p.end()
        self._tag_cache = (key, image)
        return image

    def _paint_preview(self, p: QPainter) -> None:
        box = self.preview_rect()
        if self._preview is None:  # the placeholder card, drawn once per size and note
            key = (round(box.width()), round(box.height()), self.preview_note)
            if self._note_cache is None or self._note_cache[0] != key:
                self._note_cache = (key, self._render_placeholder(box))
            p.drawImage(box.topLeft() - QPointF(1, 1), self._note_cache[1])
            return
        self._paint_preview_card(p, box)

    def _render_placeholder(self, box: QRectF) -> QImage:
        image = _overlay(QSize(round(box.width()) + 2, round(box.height()) + 2))
        p = QPainter(image)
        p.setFont(self.font())
        self._paint_preview_card(p, QRectF(1, 1, box.width(), box.height()))
        p.end()
        return image

    def _paint_preview_card(self, p: QPainter, box: QRectF) -> None:
        clip = QPainterPath()
        clip.addRoundedRect(box, 10, 10)
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setClipPath(clip)
        if self._preview is not None:
            image = self._preview[1]
            if image.width() == round(box.width()) and image.height() == round(box.height()):
                p.drawImage(box.topLeft(), image)
            else:
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
                p.drawImage(box, image)
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
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
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
