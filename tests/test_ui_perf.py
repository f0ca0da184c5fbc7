"""Opt-in: how smooth the GUI thread stays while turns run, and the README screenshot.

    DOPPEL_UI_PERF=1 QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest tests/test_ui_perf.py -s
    DOPPEL_SCREENSHOT=docs/screenshot.png  (also save a screenshot taken while the replica speaks)

A 16 ms precise timer on the GUI thread stands in for the display's refresh:
the gap between two of its ticks is the GUI's frame-to-frame time, and any
work that blocks the GUI thread (painting, event handling) shows up in it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt, QTimer

from app.core.audio_io import FileSource
from app.ui.launch import build_app
from app.ui.settings import AppSettings, SettingKey
from tests.test_camera import write_face_video
from tests.test_ui_window import stand_in_devices

pytestmark = pytest.mark.skipif(not os.environ.get("DOPPEL_UI_PERF"), reason="opt-in: set DOPPEL_UI_PERF=1")

BUSY_LOAD = 4.0  # 1-minute load average above which other processes, not Doppel, set the tail
QUESTIONS = ("What is the capital of France?", "Tell me a fun fact about the ocean.", "What is your favourite season?")


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def test_gui_frame_time_while_turns_run(qtbot, config, engines, tmp_path) -> None:
    settings = AppSettings(QSettings(str(tmp_path / "perf.ini"), QSettings.Format.IniFormat))
    settings.set(SettingKey.GREETING, "Hello!")
    settings.set(SettingKey.FIRST_RUN_GUIDE_SEEN, True)  # the window as it is used, not its first-run card
    video = write_face_video(tmp_path / "me.avi", seconds=4.0, x_from=0.12)
    window = build_app(
        config, settings, stand_in_devices(mic=lambda: FileSource([]), camera_file=video), load=lambda _c, _p: engines
    )
    window.resize(1280, 760)
    window.show()
    qtbot.waitUntil(lambda: window.session.is_ready, timeout=20_000)
    greeted = qtbot.waitSignal(window.session.greeted, timeout=20_000)
    greeted.wait()
    qtbot.waitUntil(lambda: window.session.conversation.idle, timeout=90_000)

    ticks: list[float] = []
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(16)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    paints_before = len(window.video.paint_at)
    timer.start()
    shot = os.environ.get("DOPPEL_SCREENSHOT")
    for i, question in enumerate(QUESTIONS):
        window.input.setText(question)
        with qtbot.waitSignal(window.bridge.reply_finished, timeout=90_000):
            window.send()
            if shot and i == len(QUESTIONS) - 1:
                qtbot.waitUntil(lambda: window.video.state == "speaking", timeout=90_000)
                qtbot.wait(900)
                Path(shot).parent.mkdir(parents=True, exist_ok=True)
                assert window.grab().save(shot)
        qtbot.waitUntil(lambda: window.session.conversation.idle, timeout=90_000)
    timer.stop()

    gaps = list(np.diff(ticks) * 1000)
    paint_at = list(window.video.paint_at)[paints_before:]
    paint_gaps = list(np.diff(paint_at) * 1000)
    paint_ms = list(window.video.paint_ms)[paints_before:]
    report = {
        "seconds": round(ticks[-1] - ticks[0], 1),
        "load_average_1min": os.getloadavg()[0],  # other processes on the machine skew everything
        "gui_tick_gap_ms": {"p50": _p(gaps, 50), "p99": _p(gaps, 99), "max": max(gaps)},
        "video_repaint_gap_ms": {"p50": _p(paint_gaps, 50), "p99": _p(paint_gaps, 99)},
        "paint_ms": {"p50": _p(paint_ms, 50), "p99": _p(paint_ms, 99)},
        "replica_frames": {
            "pushed": window.session.replica_frames.pushed,
            "dropped": window.session.replica_frames.dropped,
        },
        "turns": [
            {k: vals.get(k) for k in ("ttft_ms", "tps", "llm_latency_ms", "speech_end_to_first_frame_ms")}
            for _, vals in window.hud.history
        ],
    }
    print(json.dumps(report, indent=1))
    window.close()
    if report["load_average_1min"] > BUSY_LOAD:
        pytest.skip(f"machine busy with other work (load {report['load_average_1min']:.1f}): p99 not judged")
    assert report["gui_tick_gap_ms"]["p99"] <= 33.0, report
