"""The latency HUD: the current turn's numbers, live, and a chart of the last 20 turns.

``HudModel`` only keeps what the metrics observer computed (``TurnMetrics``
values); ``paint_hud`` draws it with QPainter over the video.  Nothing here
measures anything.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen

HISTORY = 20


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    unit: str = "ms"
    headline: bool = False


ROWS = (
    Row("TTFT", "ttft_ms", headline=True),
    Row("TPS", "tps", "tok/s", headline=True),
    Row("20/TPS + TTFT", "llm_latency_ms", headline=True),
    Row("20th token (measured)", "twentieth_token_ms"),
    Row("LLM pause for first audio", "llm_yield_ms"),
    Row("LLM waits for later TTS", "llm_tts_wait_ms"),
    Row("LLM rests for the face", "llm_face_wait_ms"),
    Row("VAD end of turn", "vad_end_of_turn_ms"),
    Row("ASR", "asr_final_ms"),
    Row("LLM → first TTS chunk", "first_chunk_to_tts_ms"),
    Row("TTS first audio", "tts_first_audio_ms"),
    Row("LLM total", "llm_total_ms"),
    Row("speech end → first audio", "speech_end_to_first_audio_ms", headline=True),
    Row("speech end → first frame", "speech_end_to_first_frame_ms", headline=True),
    Row("barge-in → silent", "barge_in_ms"),
)

# Chart series: (key, colour, label)
BAR_KEY = "speech_end_to_first_frame_ms"
BAR_FALLBACK_KEY = "speech_end_to_first_audio_ms"
INNER_KEY = "ttft_ms"
LINE_KEY = "llm_latency_ms"
BAR_COLOUR = QColor(90, 160, 255, 200)
INNER_COLOUR = QColor(255, 190, 90, 230)
LINE_COLOUR = QColor(140, 230, 160)


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:,.0f} ms"
    return f"{value:.1f} {unit}"


class HudModel:
    """The turn on show and the finished turns before it."""

    def __init__(self) -> None:
        self.turn_id: int | None = None
        self.values: dict[str, float | None] = {}
        self.history: deque[tuple[int, dict[str, float | None]]] = deque(maxlen=HISTORY)

    def update(self, turn_id: int, values: dict[str, float | None]) -> None:
        if turn_id <= 0:
            return  # lifecycle events, not a turn
        if self.turn_id is None or turn_id >= self.turn_id:
            self.turn_id, self.values = turn_id, dict(values)
        if values.get("final") and self._worth_charting(values):
            if self.history and self.history[-1][0] == turn_id:
                self.history[-1] = (turn_id, dict(values))
            else:
                self.history.append((turn_id, dict(values)))

    @staticmethod
    def _worth_charting(values: dict[str, float | None]) -> bool:
        return any(values.get(k) is not None for k in (BAR_KEY, BAR_FALLBACK_KEY, INNER_KEY, LINE_KEY))

    def value(self, key: str) -> float | None:
        return self.values.get(key)

    def shown(self) -> tuple:
        """Everything the painted HUD depends on (equal: the same picture, no redraw needed)."""
        rows = tuple(format_value(self.values.get(r.key), r.unit) for r in ROWS)
        chart = tuple((t, _bar_value(v), v.get(INNER_KEY), v.get(LINE_KEY)) for t, v in self.history)
        return self.turn_id, rows, chart

    def text(self) -> str:
        """The HUD as plain text (for logs and tests)."""
        return "\n".join(f"{r.label}: {format_value(self.values.get(r.key), r.unit)}" for r in ROWS)


def paint_hud(painter: QPainter, origin: QPointF, model: HudModel, scale: float = 1.0) -> QRectF:
    """Draw the HUD panel with its top-left corner at ``origin``; returns the area painted."""
    font = QFont(painter.font())
    font.setPixelSize(max(10, round(12 * scale)))
    bold = QFont(font)
    bold.setBold(True)
    metrics = QFontMetricsF(font)
    line = metrics.height() + 2 * scale
    pad = 10 * scale
    width = 300 * scale
    chart_h = 70 * scale
    height = pad * 2 + line * (len(ROWS) + 1) + chart_h + line * 2.2
    panel = QRectF(origin, origin + QPointF(width, height))
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(10, 14, 20, 190))
    painter.drawRoundedRect(panel, 10 * scale, 10 * scale)

    x0, y = panel.left() + pad, panel.top() + pad + metrics.ascent()
    title = f"Latency · turn {model.turn_id}" if model.turn_id else "Latency · waiting for a turn"
    painter.setFont(bold)
    painter.setPen(QColor(235, 240, 245))
    painter.drawText(QPointF(x0, y), title)
    y += line
    for row in ROWS:
        value = model.values.get(row.key)
        painter.setFont(bold if row.headline else font)
        painter.setPen(QColor(225, 232, 240) if row.headline else QColor(160, 170, 182))
        painter.drawText(QPointF(x0, y), row.label)
        text = format_value(value, row.unit)
        painter.setPen(QColor(255, 255, 255) if value is not None else QColor(110, 118, 128))
        painter.drawText(QPointF(panel.right() - pad - metrics.horizontalAdvance(text), y), text)
        y += line
    chart = QRectF(x0, y + line * 0.6, width - 2 * pad, chart_h)
    _paint_chart(painter, chart, model, font, scale)
    _paint_legend(painter, QPointF(x0, chart.bottom() + line * 1.1), font, scale)
    painter.restore()
    return panel


def _bar_value(values: dict[str, float | None]) -> float | None:
    v = values.get(BAR_KEY)
    return v if v is not None else values.get(BAR_FALLBACK_KEY)


def _paint_chart(painter: QPainter, area: QRectF, model: HudModel, font: QFont, scale: float) -> None:
    painter.setPen(QPen(QColor(255, 255, 255, 40), 1))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawLine(area.bottomLeft(), area.bottomRight())
    turns = list(model.history)
    if not turns:
        painter.setFont(font)
        painter.setPen(QColor(110, 118, 128))
        painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "last 20 turns appear here")
        return
    peaks = [v for _, vals in turns for v in (_bar_value(vals), vals.get(INNER_KEY), vals.get(LINE_KEY)) if v]
    top = max(peaks, default=1.0) * 1.1
    slot = area.width() / HISTORY
    bar_w = max(2.0, slot * 0.62)

    def y_of(v: float) -> float:
        return area.bottom() - min(v / top, 1.0) * area.height()

    points: list[QPointF] = []
    for i, (_, vals) in enumerate(turns):
        cx = area.left() + slot * (i + 0.5)
        bar = _bar_value(vals)
        painter.setPen(Qt.PenStyle.NoPen)
        if bar is not None:
            painter.setBrush(BAR_COLOUR)
            painter.drawRect(QRectF(cx - bar_w / 2, y_of(bar), bar_w, area.bottom() - y_of(bar)))
        inner = vals.get(INNER_KEY)
        if inner is not None:
            painter.setBrush(INNER_COLOUR)
            painter.drawRect(QRectF(cx - bar_w / 4, y_of(inner), bar_w / 2, area.bottom() - y_of(inner)))
        line_v = vals.get(LINE_KEY)
        if line_v is not None:
            points.append(QPointF(cx, y_of(line_v)))
    if points:
        path = QPainterPath(points[0])
        for p in points[1:]:
            path.lineTo(p)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(LINE_COLOUR, 1.6 * scale))
        painter.drawPath(path)
        painter.setBrush(LINE_COLOUR)
        for p in points:
            painter.drawEllipse(p, 1.8 * scale, 1.8 * scale)
    label = f"max {top / 1.1:,.0f} ms"
    painter.setFont(font)
    painter.setPen(QColor(130, 138, 150))
    fm = QFontMetricsF(font)
    painter.drawText(QPointF(area.right() - fm.horizontalAdvance(label), area.top() - 3 * scale), label)


def _paint_legend(painter: QPainter, at: QPointF, font: QFont, scale: float) -> None:
    small = QFont(font)
    small.setPixelSize(max(9, round(10.5 * scale)))
    painter.setFont(small)
    fm = QFontMetricsF(small)
    x = at.x()
    for colour, label in ((BAR_COLOUR, "end → frame"), (INNER_COLOUR, "TTFT"), (LINE_COLOUR, "20/TPS+TTFT")):
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawRect(QRectF(x, at.y() - fm.ascent() + 2 * scale, 9 * scale, 9 * scale))
        painter.setPen(QColor(170, 178, 190))
        painter.drawText(QPointF(x + 13 * scale, at.y()), label)
        x += 13 * scale + fm.horizontalAdvance(label) + 12 * scale
