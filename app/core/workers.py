"""A stage's worker thread with a bounded input queue and an urgent lane."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Job = TypeVar("Job")
_log = logging.getLogger(__name__)
_STOP = object()


class _Mark:
    """Queued behind real jobs; set when the worker reaches it (``flush``)."""

    def __init__(self) -> None:
        self.reached = threading.Event()


class Worker(Generic[Job]):
    """Runs ``handle(job)`` for each submitted job on its own thread.

    ``submit`` never blocks the caller: when the queue is full the job is
    refused (returns False) so one slow stage cannot stall another's input.
    ``urgent`` jobs (cancellations) jump ahead of queued work.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[Job], None],
        maxsize: int = 32,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._handle = handle
        self._on_start = on_start  # runs first on the worker's own thread (the CPU plan adopts it)
        self._queue: queue.Queue[object] = queue.Queue(maxsize)
        self._urgent: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._wake = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._run, name=f"doppel-{name}", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> bool:
        if self._stopping:
            return False
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            _log.warning("%s queue full: dropped %s", self.name, type(job).__name__)
            return False
        self._wake.release()
        return True

    def submit_urgent(self, job: Job) -> None:
        self._urgent.put(job)
        self._wake.release()

    def _next(self) -> object:
        self._wake.acquire()
        try:
            return self._urgent.get_nowait()
        except queue.Empty:
            return self._queue.get_nowait()

    def _run(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while True:
            job = self._next()
            if job is _STOP:
                return
            if isinstance(job, _Mark):
                job.reached.set()
                continue
            try:
                self._handle(job)  # type: ignore[arg-type]
            except Exception:
                _log.exception("%s failed on %s", self.name, type(job).__name__)

    def flush(self, timeout: float) -> bool:
        """Wait until every job submitted before this call has been handled; False on timeout."""
        mark = _Mark()
        if not self.submit(mark):  # type: ignore[arg-type]
            return False
        return mark.reached.wait(timeout)

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the thread to finish after its current job; True if it ended in time."""
        self._stopping = True
        self._urgent.put(_STOP)
        self._wake.release()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
