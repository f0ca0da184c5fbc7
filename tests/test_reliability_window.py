"""The window under abuse: odd typed text, a full disk, a speaker that dies mid-reply, closing mid-turn.

Real window (offscreen), real models; devices are the usual stand-ins.  Replies
are kept short (``max_reply_tokens``) so each turn takes a couple of seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from app.core import events as ev
from app.ui.devices import DeviceProvider
from app.ui.launch import build_app
from app.ui.main_window import MainWindow
from app.ui.settings import AppSettings
from tests.test_ui_window import stand_in_devices

TURN_MS = 60_000
ODD = "Hi 😀 — שלום עולם <b>bold</b> <img src=x onerror=alert(1)> &amp; \x1b[31mred\x00 tab\there \u202eevil"


@pytest.fixture
def window(qtbot, config, engines, tmp_path: Path, monkeypatch) -> Iterator[Callable[..., MainWindow]]:
    opened: list[MainWindow] = []

    def open_(devices: DeviceProvider | None = None, max_reply_tokens: int = 12) -> MainWindow:
        settings = AppSettings(QSettings(str(tmp_path / "doppel.ini"), QSettings.Format.IniFormat))
        short = replace(config, max_reply_tokens=max_reply_tokens)
        monkeypatch.setattr(engines.llm, "max_tokens", max_reply_tokens)  # the engine's own cap (loaded once)
        w = build_app(short, settings, devices or DeviceProvider.none(), load=lambda _c, _p: engines, replica=False)
        w.events = []  # type: ignore[attr-defined]
        w.bridge.event.connect(w.events.append)  # type: ignore[attr-defined]
        w.show()
        opened.append(w)
        qtbot.waitUntil(lambda: w.session.is_ready, timeout=20_000)
        return w

    yield open_
    for w in opened:
        w.close()


def of(w: MainWindow, kind: type) -> list:
    return [e for e in w.events if isinstance(e, kind)]  # type: ignore[attr-defined]


def send(qtbot, w: MainWindow, text: str, timeout_ms: int = TURN_MS) -> tuple[int, str]:
    w.input.setText(text)
    with qtbot.waitSignal(w.bridge.reply_finished, timeout=timeout_ms) as done:
        w.send()
    return done.args[0], done.args[1]


def test_empty_and_blank_messages_start_no_turn(window, qtbot) -> None:
    w = window()
    for text in ("", "   ", "\t\n "):
        w.input.setText(text)
        w.send()
    qtbot.wait(300)
    assert not of(w, ev.UserText) and not of(w, ev.LlmRequest)
    assert w.session.conversation.idle


def test_odd_characters_are_shown_literally_and_the_turn_completes(window, qtbot) -> None:
    w = window()
    turn_id, _heard = send(qtbot, w, ODD)
    text = w.transcript.toPlainText()
    assert "😀 — שלום עולם <b>bold</b> <img src=x onerror=alert(1)> &amp; " in text
    assert "␛[31mred␀ tab\there \u202eevil" in text  # control characters visible, not obeyed or dropped
    html = w.transcript.document().toHtml()
    assert "<img" not in html and "&lt;img" in html
    assert of(w, ev.UserText)[0].text == ODD.strip()  # the pipeline got exactly what was typed
    assert not [e for e in of(w, ev.ErrorEvent) if e.turn_id == turn_id]


def test_a_ten_thousand_character_message_is_cut_to_fit_with_a_notice(window, qtbot, engines, monkeypatch) -> None:
    # As with a model of a 640-token context: the same cut, a quarter of the prompt to evaluate (at ~80
    # tokens/s on a shared 2-core machine, a full 2048-token context alone would take 25 s).
    monkeypatch.setattr(engines.llm, "context_tokens", 640)
    w = window()
    words = " ".join(f"word{i}" for i in range(2000))
    message = words[:9_996] + " ok?"
    assert len(message) == 10_000
    turn_id, _heard = send(qtbot, w, message, timeout_ms=120_000)
    text = w.transcript.toPlainText()
    assert message in text  # shown whole
    assert "the model can read about" in text and "beginning and the end" in text
    assert not [e for e in of(w, ev.ErrorEvent) if e.turn_id == turn_id], "cut to fit, not an error"
    assert [e for e in of(w, ev.LlmToken) if e.turn_id == turn_id], "and answered"
    fitted = w.session.conversation.history.fit(message)
    assert fitted.startswith("word0 word1") and fitted.endswith(" ok?") and " … " in fitted


def test_a_full_disk_is_reported_once_and_the_conversation_goes_on(window, qtbot) -> None:
    w = window()
    log = w.session.conversation.log
    good = log.path
    log.path = Path("/dev/full")  # every write fails with ENOSPC, as on a full disk
    first, _ = send(qtbot, w, "Say one word.")
    second, _ = send(qtbot, w, "Say another word.")
    qtbot.waitUntil(lambda: log.dropped == 2, timeout=5000)  # the record is written just after the reply shows
    notes = [e for e in of(w, ev.ErrorEvent) if e.source == "log"]
    assert len(notes) == 1 and "disk is full" in notes[0].message
    assert w.transcript.toPlainText().count("disk is full") == 1
    assert w.transcript.reply_text(first) and w.transcript.reply_text(second)
    log.path = good  # space freed: logging resumes, and a later failure would be reported again
    assert log.write({"turn_id": 99}) and log.error == ""
    qtbot.wait(100)
    assert len([e for e in of(w, ev.ErrorEvent) if e.source == "log"]) == 1


def test_a_speaker_that_dies_mid_reply_ends_the_turn_and_text_goes_on(window, qtbot) -> None:
    w = window(stand_in_devices(speaker=True), max_reply_tokens=48)
    switch = w.session.speaker
    switch.stall_s = 0.3
    w.input.setText("Tell me a story about the sea.")
    w.send()
    qtbot.waitUntil(lambda: bool(of(w, ev.AudioPlayed)), timeout=TURN_MS)
    turn_id = of(w, ev.AudioPlayed)[0].turn_id
    switch.device._pacer.stop()  # the device stops asking for audio: unplugged
    qtbot.waitUntil(lambda: "speaker stopped" in w.banner.text(), timeout=5000)
    qtbot.waitUntil(lambda: any(e.turn_id == turn_id for e in of(w, ev.TurnEnded)), timeout=5000)
    assert w.session.conversation.idle and switch.silent
    later, heard = send(qtbot, w, "Are you still there?")
    assert later > turn_id and heard


def test_closing_the_window_mid_turn_exits_within_two_seconds(window, qtbot) -> None:
    before = {t.ident for t in threading.enumerate()}
    w = window(stand_in_devices(speaker=True), max_reply_tokens=96)
    w.input.setText("Tell me a long story about a dragon and a knight.")
    w.send()
    qtbot.waitUntil(lambda: bool(of(w, ev.LlmToken)), timeout=TURN_MS)  # generating and about to speak
    started = time.monotonic()
    w.close()
    closed_s = time.monotonic() - started
    leftover = [
        t.name
        for t in threading.enumerate()
        if t.ident not in before and t.is_alive() and not isinstance(t, threading._DummyThread)
    ]
    assert closed_s < 2.0, f"closing took {closed_s:.2f} s"
    assert not leftover, leftover


def test_closing_the_window_while_models_load_skips_the_rest(qtbot, config, tmp_path: Path) -> None:
    """Closed during the first model's load: the window hides at once, the next models are never loaded."""
    from app.compose import load_engines

    steps: list[str] = []

    def load(c, progress):
        return load_engines(c, lambda message, fraction: (progress(message, fraction), steps.append(message)))

    settings = AppSettings(QSettings(str(tmp_path / "doppel.ini"), QSettings.Format.IniFormat))
    w = build_app(config, settings, DeviceProvider.none(), load=load, replica=False)
    w.show()
    qtbot.waitUntil(lambda: bool(steps), timeout=20_000)  # the ASR model is loading
    loader = w.session._loader
    started = time.monotonic()
    w.close()
    closed_s = time.monotonic() - started
    assert not w.isVisible()
    assert loader is not None and w.session.conversation is None
    assert steps == ["Loading ASR model"], steps  # stopped before the LLM (the largest) was loaded
    assert closed_s < 2.0, f"closing took {closed_s:.2f} s"
