"""The GUI's small parts, without models: bridge, frame mailbox, mic gate, HUD, settings, transcript."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from app.config import Config
from app.core import events as ev
from app.core.bus import EventBus
from app.ui.bridge import EventBridge, FrameBridge
from app.ui.devices import MISSING_HELP, choose
from app.ui.gates import MicGate, MicMode
from app.ui.hud import HudModel
from app.ui.qt_compat import void_calls_leak_none
from app.ui.settings import DEVICE_OFF, AppSettings, SettingKey
from app.ui.widgets.transcript import TranscriptView


def test_void_qt_calls_do_not_drain_none(qapp) -> None:
    """The refcount guard (app/ui/qt_compat.py) holds: thousands of void calls later, None is fine."""
    import sys

    from PySide6.QtCore import QPoint

    import app.ui  # noqa: F401  (applies the guard)

    point = QPoint()
    for i in range(50_000):
        point.setX(i)
    assert sys.getrefcount(None) > 1000
    assert isinstance(void_calls_leak_none(), bool)


def test_bridge_queues_worker_events_to_the_gui_thread(qtbot) -> None:
    bus, bridge = EventBus(), EventBridge()
    bridge.attach(bus)
    seen: list[tuple[int, str, bool]] = []
    threads: list[threading.Thread] = []
    bridge.user_said.connect(
        lambda turn, text, spoken: (seen.append((turn, text, spoken)), threads.append(threading.current_thread()))
    )
    worker = threading.Thread(target=lambda: bus.publish(ev.TranscriptFinal(3, "hello")))
    with qtbot.waitSignal(bridge.user_said, timeout=2000):
        worker.start()
    worker.join()
    assert seen == [(3, "hello", True)]
    assert threads == [threading.main_thread()]
    bridge.detach()
    bus.publish(ev.UserText(4, "ignored"))
    qtbot.wait(50)
    assert len(seen) == 1


def test_bridge_batches_streamed_tokens_in_order(qtbot) -> None:
    """Tokens within 50 ms go to the GUI as one batch, and any other event sends them first."""
    bus, bridge = EventBus(), EventBridge()
    bridge.attach(bus)
    seen: list[tuple] = []
    bridge.token.connect(lambda turn, text: seen.append(("token", turn, text)))
    bridge.reply_finished.connect(lambda turn, text: seen.append(("done", turn, text)))
    t0 = 10_000_000_000
    stamps = [0, 5, 10, 20, 60, 70]  # ms: the first token goes at once, the 60 ms one closes a batch
    pieces = [" One", " two", " three", ".", " Four", " five"]

    def stream() -> None:
        for i, (ms, text) in enumerate(zip(stamps, pieces, strict=True)):
            bus.publish(ev.LlmToken(1, text, i, t_ns=t0 + ms * 1_000_000))
        bus.publish(ev.ReplyText(1, "One two three. Four five"))
        bus.publish(ev.LlmToken(2, " Next", 0, t_ns=t0 + 80_000_000))  # another turn: its own batch

    worker = threading.Thread(target=stream)
    with qtbot.waitSignal(bridge.reply_finished, timeout=2000):
        worker.start()
    worker.join()
    bridge.flush()
    qtbot.waitUntil(lambda: len(seen) == 5, timeout=2000)
    assert seen == [
        ("token", 1, " One"),
        ("token", 1, " two three. Four"),
        ("token", 1, " five"),
        ("done", 1, "One two three. Four five"),
        ("token", 2, " Next"),
    ]


def test_frame_bridge_keeps_only_the_newest_frame(qtbot) -> None:
    frames = FrameBridge()
    got: list[int] = []
    frames.ready.connect(lambda: got.append(frames.take()))

    def render(start: int, n: int) -> None:
        worker = threading.Thread(target=lambda: [frames.push(i) for i in range(start, start + n)])
        worker.start()
        worker.join()  # the GUI thread is blocked here, like a GUI that falls behind

    render(0, 100)
    assert frames.dropped == 99
    qtbot.waitUntil(lambda: got == [99], timeout=2000)
    render(100, 1)
    qtbot.waitUntil(lambda: got == [99, 100], timeout=2000)


class _ListSource:
    name = "list"

    def __init__(self) -> None:
        self.on_frames = None
        self.stopped = False

    def start(self, on_frames) -> None:
        self.on_frames = on_frames

    def stop(self) -> None:
        self.stopped = True


def test_mic_gate_zeroes_frames_when_closed_and_swaps_devices() -> None:
    gate = MicGate(stall_s=0.05)
    out: list[float] = []
    gate.start(lambda frame, t: out.append(float(np.abs(frame).max())))
    first = _ListSource()
    gate.attach(first)
    loud = np.ones(512, dtype=np.float32)
    first.on_frames(loud, 0)
    gate.muted = True
    first.on_frames(loud, 1)
    gate.muted, gate.mode = False, MicMode.PUSH_TO_TALK
    first.on_frames(loud, 2)
    gate.talk_pressed = True
    first.on_frames(loud, 3)
    gate.mode, gate.away = MicMode.HANDS_FREE, True
    first.on_frames(loud, 4)
    assert out == [1.0, 0.0, 0.0, 1.0, 0.0]
    second = _ListSource()
    gate.attach(second)
    assert first.stopped and gate.device is second
    first.on_frames(loud, 5)  # a late frame from the old device is ignored
    assert len(out) == 5
    time.sleep(0.1)
    assert gate.stalled()  # the new device never sent anything


def test_hud_model_tracks_the_current_turn_and_charts_finished_ones() -> None:
    hud = HudModel()
    hud.update(0, {"ttft_ms": 1.0})  # lifecycle (turn 0) is ignored
    assert hud.turn_id is None
    hud.update(1, {"ttft_ms": 300.0, "tps": 20.0, "llm_latency_ms": 1300.0, "final": 0.0})
    assert hud.value("llm_latency_ms") == 1300.0 and not hud.history
    hud.update(1, {"ttft_ms": 300.0, "tps": 20.0, "llm_latency_ms": 1300.0, "final": 1.0})
    for turn in range(2, 30):
        hud.update(turn, {"ttft_ms": float(turn), "final": 1.0})
    assert len(hud.history) == 20 and hud.turn_id == 29
    assert "TTFT: 29 ms" in hud.text()


def test_settings_round_trip_and_config_overlay(tmp_path) -> None:
    store = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings = AppSettings(store)
    assert settings.flag(SettingKey.GREET) is True and settings.text(SettingKey.CAMERA) == ""
    changed = settings.update({SettingKey.MUTED: True, SettingKey.PERSONA_NAME: "Ada", SettingKey.GREET: True})
    assert changed == [SettingKey.MUTED, SettingKey.PERSONA_NAME]
    again = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert again.flag(SettingKey.MUTED) is True
    config = again.apply_to(Config(), keep={"llm_model"})
    assert config.persona_name == "Ada" and config.system_prompt == Config(persona_name="Ada").system_prompt
    assert config.system_prompt.startswith("You are Ada, ")  # the persona prompt follows the name


@pytest.mark.parametrize(
    ("wanted", "available", "expected"),
    [
        ("", [], (None, MISSING_HELP["microphone"])),
        ("", [("a", "A")], ("", "")),
        ("b", [("a", "A"), ("b", "B")], ("b", "")),
        (DEVICE_OFF, [("a", "A")], (None, "Microphone is off: type to talk.")),
    ],
)
def test_device_choice(wanted, available, expected) -> None:
    assert choose("microphone", wanted, available) == expected


def test_unplugged_choice_falls_back_with_a_note() -> None:
    device, note = choose("camera", "/dev/video7", [("0", "Built-in")])
    assert device == "0" and "not connected" in note


def test_transcript_is_plain_text_and_streams_into_its_turn(qtbot) -> None:
    view = TranscriptView()
    qtbot.addWidget(view)
    view.persona = "Joe"
    view.add_user(1, "hi <i>there</i>", spoken=False)
    view.add_token(1, " <b>bold</b>")
    view.add_user(2, "next", spoken=True)
    view.add_token(1, " and <img src=x.png>")  # a late token of turn 1 goes to turn 1's line
    text = view.toPlainText()
    assert "hi <i>there</i>" in text
    assert view.reply_text(1) == "<b>bold</b> and <img src=x.png>"
    assert text.index("next") > text.index("<img")
    assert "&lt;b&gt;" in view.document().toHtml()


def test_transcript_batches_streamed_tokens_and_keeps_their_order(qtbot) -> None:
    """Tokens are held up to FLUSH_MS and inserted together (one relayout, not one per token)."""
    view = TranscriptView()
    qtbot.addWidget(view)
    inserts: list[int] = []
    view.document().contentsChange.connect(lambda _pos, _removed, added: inserts.append(added))
    view.add_user(1, "hi", spoken=False)
    inserts.clear()
    for token in ("  Paris", " is", " the", " capital", "."):
        view.add_token(1, token)
    assert not inserts, "held, not inserted one by one"
    qtbot.waitUntil(lambda: bool(inserts), timeout=1000)  # the timer flushes them
    assert view.reply_text(1) == "Paris is the capital."
    view.add_token(1, " Late")
    view.add_user(2, "next", spoken=True)  # a new line first shows what was held
    text = view.toPlainText()
    assert text.index("Late") < text.index("next")


def test_hud_updates_are_coalesced_and_unchanged_numbers_cost_no_redraw(qtbot) -> None:
    from app.ui.widgets.video import HUD_FLUSH_MS, VideoView

    hud = HudModel()
    view = VideoView(hud)
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    renders: list[int] = []
    render = view._render_hud
    view._render_hud = lambda: renders.append(1) or render()  # type: ignore[method-assign]
    qtbot.waitUntil(lambda: bool(renders), timeout=1000)  # the first paint
    renders.clear()
    for i in range(10):  # a burst: ten updates, one redraw
        hud.update(1, {"ttft_ms": 80.0, "tps": 50.0 + i})
        view.hud_changed()
    qtbot.waitUntil(lambda: bool(renders), timeout=1000)
    qtbot.wait(3 * HUD_FLUSH_MS)
    assert len(renders) == 1
    hud.update(1, {"ttft_ms": 80.0, "tps": 59.0, "n_tokens": 30.0})  # nothing the HUD prints changed
    view.hud_changed()
    qtbot.wait(3 * HUD_FLUSH_MS)
    assert len(renders) == 1


def test_tile_border_from_the_cached_ring_matches_drawing_it(qtbot) -> None:
    """The ring blits give the pixels of the corner fill and the border stroke drawn directly."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QImage, QPainter, QPen

    from app.ui.widgets.video import BACKGROUND, BORDER_WIDTH, RADIUS, STATE_COLOURS, VideoView

    view = VideoView(HudModel())
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.state = "speaking"
    side = view.tile_side()
    frame = np.random.default_rng(0).integers(0, 255, (side, side, 4), dtype=np.uint8)
    view.set_frame(frame)
    shot = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    reference = QImage(shot.size(), QImage.Format.Format_RGB32)
    reference.fill(BACKGROUND)
    tile = view.tile_rect()
    p = QPainter(reference)
    p.drawImage(tile.topLeft(), view._frame[1])
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.fillPath(view._corners(tile), BACKGROUND)
    colour = STATE_COLOURS["speaking"]
    p.setPen(QPen(QColor(colour.red(), colour.green(), colour.blue(), 150), BORDER_WIDTH))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRoundedRect(tile, RADIUS, RADIUS)
    p.end()

    def pixels(image: QImage, r) -> np.ndarray:
        a = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
        return a[r.top() - 4 : r.bottom() + 5, r.left() - 4 : r.right() + 5, :3].astype(int)

    box = tile.toAlignedRect().adjusted(0, 0, 0, -side // 2)  # the top half: no name tag, no camera card
    assert np.abs(pixels(shot, box) - pixels(reference, box)).max() <= 2
