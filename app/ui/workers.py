"""Work that must stay off the GUI thread: loading models, shutting a conversation down.

Wiring follows the usual Qt pattern, done once here: the worker object is
moved to a QThread, ``started -> run``, ``finished -> quit``, and a keeper
frees both once the thread has ended.  Results come back as signals, queued
to the GUI thread (connect them to QObject slots, not lambdas, so they are).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from app.compose import Engines, Progress, load_engines
from app.config import Config

Loader = Callable[[Config, Progress], Engines]
_log = logging.getLogger(__name__)


class LoadAbandoned(Exception):
    """The window closed while models were loading: stop before the next one."""


class EngineLoader(QObject):
    """Runs ``load(config, progress)`` on its thread; reports progress, then ``loaded`` or ``failed``.

    ``abandon()`` (the window is closing) stops the load at the next model: a model
    half-loaded cannot be dropped safely, but the ones after it need not be loaded at all.
    """

    progress = Signal(str, float)
    loaded = Signal(object)  # Engines
    failed = Signal(str)
    finished = Signal()

    def __init__(self, config: Config, load: Loader = load_engines) -> None:
        super().__init__()
        self._config = config
        self._load = load
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        self._abandoned.set()

    def _progress(self, message: str, fraction: float) -> None:
        if self._abandoned.is_set():
            raise LoadAbandoned
        self.progress.emit(message, fraction)

    @Slot()
    def run(self) -> None:
        try:
            engines = self._load(self._config, self._progress)
        except LoadAbandoned:
            _log.info("model loading abandoned: the window closed")
        except Exception as exc:  # a missing model file is reported, not fatal: text box stays usable
            _log.exception("loading models failed")
            self.failed.emit(str(exc))
        else:
            self.loaded.emit(engines)
        finally:
            self.finished.emit()


class Job(QObject):
    """A one-off callable on a thread of its own (e.g. a blocking shutdown)."""

    done = Signal(object)
    finished = Signal()

    def __init__(self, func: Callable[[], Any]) -> None:
        super().__init__()
        self._func = func

    @Slot()
    def run(self) -> None:
        try:
            self.done.emit(self._func())
        except Exception:
            _log.exception("background job failed")
            self.done.emit(None)
        finally:
            self.finished.emit()


class _Keeper(QObject):
    """Holds each worker and its thread until the thread has ended, then lets Python free both.

    PySide owns parentless QObjects, so dropping the last reference while the
    thread still runs would destroy a running QThread; ``thread.finished`` is
    delivered here on the GUI thread, after the thread is really done.
    """

    def __init__(self) -> None:
        super().__init__()
        self.running: dict[QThread, QObject] = {}

    @Slot()
    def release(self) -> None:
        for thread in [t for t in self.running if t.isFinished()]:
            del self.running[thread]

    def wait_all(self, timeout_ms: int = 30_000) -> None:
        for thread in list(self.running):
            thread.wait(timeout_ms)
        self.release()


_keeper: _Keeper | None = None


def keeper() -> _Keeper:
    global _keeper
    if _keeper is None:
        _keeper = _Keeper()
    return _keeper


def start_worker(worker: EngineLoader | Job) -> QThread:
    """Move ``worker`` to a new thread and run it: ``started -> run``, ``finished -> quit``."""
    thread = QThread()
    thread.setObjectName(f"doppel-{type(worker).__name__.lower()}")
    holder = keeper()
    holder.running[thread] = worker
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    # Direct: QThread.quit is thread-safe, and a queued call would need the GUI thread,
    # which may be the one waiting for this thread to end (closing during a model load).
    worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
    thread.finished.connect(holder.release)
    thread.start()
    return thread
