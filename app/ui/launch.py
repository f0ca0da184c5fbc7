"""The GUI's composition root: settings, devices, replica, session and window are built here, once.

``build_app`` is what tests call (with a temporary settings file and stand-in
devices); ``run_gui`` is what ``doppel`` with no command calls.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from app.compose import load_engines
from app.config import Config
from app.ui.bridge import EventBridge
from app.ui.devices import DeviceProvider
from app.ui.main_window import MainWindow
from app.ui.session import Session
from app.ui.settings import AppSettings
from app.ui.workers import Loader

_log = logging.getLogger(__name__)
GIL_SWITCH_S = 0.001


def default_replica(photo: str | None = None) -> object | None:
    """The replica of ``photo`` (the config's face_photo), else the bundled one, else None (an empty tile)."""
    try:
        from app.replica import Replica

        if photo:
            try:
                return Replica.from_file(photo)
            except (OSError, ValueError) as exc:  # unreadable, or no face in it: say so, use the bundled face
                _log.warning("the replica's photo %s cannot be used (%s); showing the bundled face", photo, exc)
        return Replica.from_assets()
    except Exception as exc:  # missing assets or replica package: show the app anyway
        _log.warning("no replica face: %s", exc)
        return None


def build_app(
    config: Config,
    settings: AppSettings | None = None,
    devices: DeviceProvider | None = None,
    *,
    load: Loader = load_engines,
    replica: object | None = None,
    keep: set[str] | frozenset[str] = frozenset(),
    start: bool = True,
) -> MainWindow:
    """Build everything and start it; the window is returned before the models finish loading.

    ``keep`` names Config fields given on the command line (saved settings do
    not override them).  Pass ``replica=False`` for no face at all.
    """
    app = QApplication.instance()
    if isinstance(app, QApplication):
        app.setStyle("Fusion")
    # Worker threads (replica, LLM glue, pacers) run Python too; with the default 5 ms GIL
    # switch interval the GUI thread can wait that long at every Qt call of a repaint.
    sys.setswitchinterval(GIL_SWITCH_S)
    settings = settings or AppSettings()
    devices = devices or DeviceProvider.system()
    effective = settings.apply_to(config, keep)
    if replica is None:
        replica = default_replica(config.face_photo)
    bridge = EventBridge()
    session = Session(effective, settings, devices, bridge, replica or None, load)
    window = MainWindow(session, bridge, settings, config)
    bridge.setParent(window)
    session.setParent(window)
    if start:
        session.start()
    return window


def _no_display() -> bool:
    """Linux without X11/Wayland: Qt would abort the process, so say what to do instead."""
    env = os.environ
    return (
        sys.platform.startswith("linux")
        and not env.get("QT_QPA_PLATFORM")
        and not env.get("DISPLAY")
        and not env.get("WAYLAND_DISPLAY")
    )


def run_gui(args: argparse.Namespace, config: Config) -> int:
    if _no_display() and QApplication.instance() is None:
        print(
            "doppel: no display found (DISPLAY/WAYLAND_DISPLAY unset). Run `doppel chat` for the terminal, "
            "`doppel converse` for WAV files, or set QT_QPA_PLATFORM=offscreen.",
            file=sys.stderr,
        )
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Doppel")
    path = getattr(args, "settings", None)
    store = QSettings(str(path), QSettings.Format.IniFormat) if path else None
    explicit = {k for k in vars(args) if k not in ("command", "func", "settings")}
    window = build_app(config, AppSettings(store), keep=explicit)
    window.show()
    signal.signal(signal.SIGINT, lambda *_: window.close())  # Ctrl+C in the terminal closes cleanly
    wake = QTimer(window)  # let Python see the signal while Qt's loop runs
    wake.timeout.connect(lambda: None)
    wake.start(250)
    return app.exec()
