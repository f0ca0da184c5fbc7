"""`doppel bench --gui`: the bench's spoken inputs through the real window, offscreen.

The numbers a user reads are the window's, with the face and the HUD painting
on the GUI thread.  The window is built by the app's own composition root
(``build_app``) with stand-in devices at the edge: the bench's files as the
microphone and a real-time null speaker.  The bench's ``Session`` drives the
inputs from a worker thread while this thread runs Qt's event loop, exactly
as the headless session does, so both tables compare one to one.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.questions import Question
from app.bench.session import Session, SessionPlan, TimedFace
from app.config import Config

READY_TIMEOUT_S = 60.0


def gui_session(
    engines: Any,
    config: Config,
    order: list[Question],
    audio: dict[str, np.ndarray],
    out_dir: Path,
    plan: SessionPlan,
    known_threads: dict[int, str],
    progress: Any,
    release_until: float | None = None,
    between_turns: Any = None,
) -> dict:
    """One session through ``MainWindow``; the same record as the headless session's.

    ``between_turns`` (app/bench/replay.py) runs when a reply has ended, the
    window's face held still meanwhile, as in the headless session.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from app.core.audio_io import WavWriterSink
    from app.ui.devices import DeviceProvider
    from app.ui.launch import build_app
    from app.ui.settings import AppSettings, SettingKey

    app = QApplication.instance() or QApplication([])
    config = replace(config, log_dir=str(out_dir / "logs"))
    bench = Session(
        config,
        engines,
        order,
        audio,
        face=None,
        log_path=out_dir / "logs" / "gui-session.jsonl",
        plan=plan,
        known_threads=known_threads,
        progress=progress,
        external=True,
    )
    with tempfile.TemporaryDirectory() as scratch:
        settings = AppSettings(QSettings(str(Path(scratch) / "bench.ini"), QSettings.Format.IniFormat))
        settings.set(SettingKey.FIRST_RUN_GUIDE_SEEN, True)  # the window as it is used every day
        devices = DeviceProvider(
            list_microphones=lambda: [("bench", "the bench's spoken inputs")],
            list_speakers=lambda: [("bench", "real-time null speaker")],
            list_cameras=lambda: [],
            open_microphone=lambda _name, _on_error: bench.source,
            open_speaker=lambda _name, rate: WavWriterSink(None, rate),
            open_camera=_no_camera,
        )
        window = build_app(config, settings, devices, load=lambda _c, _p: engines)
        window.resize(1280, 760)
        window.show()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while window.session.conversation is None and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.005)
        if window.session.conversation is None:
            window.close()
            raise RuntimeError("the window's conversation did not start within a minute")
        bench.adopt(window.session.conversation)
        _time_the_face(bench, window.session.stage)
        bench.between_turns = between_turns
        record: dict = {}
        runner = threading.Thread(
            target=lambda: record.update(bench.run(release_until=release_until)), name="bench-gui-driver", daemon=True
        )
        runner.start()
        # Qt's own event loop, as in the app (a processEvents + sleep loop woke the GUI thread
        # ~580 times a second, against ~300 for the real loop, and took CPU from the LLM).
        loop = QEventLoop()
        watch = QTimer()
        watch.timeout.connect(lambda: None if runner.is_alive() else loop.quit())
        watch.start(100)
        loop.exec()
        watch.stop()
        paints = list(getattr(window.video, "paint_at", []))
        window.close()
        app.processEvents()
    record["window"] = {"paints": len(paints), "paint_fps": _rate(paints)}
    return record


def _time_the_face(bench: Session, stage: Any) -> None:
    """The window's face timed as the headless session's is (frame rate under load) and held between turns."""
    if stage is None:
        return
    timed = TimedFace(stage.face)
    shown = stage.on_frame

    def on_frame(frame: Any) -> None:
        timed.show(frame)
        shown(frame)

    stage.face, stage.on_frame, bench.face = timed, on_frame, timed


def _rate(stamps: list[float]) -> float | None:
    return (
        round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 2) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
    )


def _no_camera(*_args: object) -> object:
    from app.ui.devices import DeviceError

    raise DeviceError("the bench runs without a camera")
