"""One streamed request to a remote LLM: the state its two threads share, and its timing.

``OpenAiCompatLlm`` runs the HTTP exchange on a worker thread and waits for it on the
caller's; ``RemoteCall`` is what they share (the event queue, the stop flag, the socket
to shut down on a barge-in).  Servers' numbers are parsed defensively here too: JSON
allows 1e999 and NaN, and a count is later divided by.
"""

from __future__ import annotations

import contextlib
import math
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from app.core.metrics import llm_latency_ms

_MAX_COUNT = 10**9  # larger token counts or rates from a server are nonsense, not numbers to divide by


@dataclass(frozen=True)
class StreamTiming:
    """Client-side numbers for the last reply (the HUD still uses events; the bench uses this)."""

    ttft_ms: float | None = None  # request sent -> first content token arrived
    tps: float | None = None
    tps_source: str = ""  # "server timings" | "server usage" | "counted" | "" (too few tokens)
    n_chunks: int = 0  # content chunks streamed (usually one token each)
    attempts: int = 0

    @property
    def latency_ms(self) -> float | None:
        """The seed's figure of merit, 20/TPS + TTFT."""
        return llm_latency_ms(self.ttft_ms, self.tps)


class RemoteCall:
    """State shared by the caller and the worker for one request."""

    def __init__(self, payload: dict[str, Any], stream_guess: Any = None) -> None:
        self.payload = payload
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stop = threading.Event()
        self.t0 = time.perf_counter()
        self.attempts = 0
        self.saw_finish = False
        self.arrivals: list[float] = []  # when each content chunk arrived (perf_counter)
        self.extra: dict[str, Any] = {}  # the server's "usage" and "timings", if it sent them
        self._lock = threading.Lock()
        # httpcore's network stream of the connection in use; until the request connects or
        # gets headers, a guess: the connection the pool kept from the last request.
        self._stream: Any = stream_guess

    def put(self, kind: str, value: Any = None) -> None:
        self.events.put((kind, value))

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx trace hook: learn the socket as soon as it connects, before any header arrives."""
        if event == "connection.connect_tcp.complete":
            self.attach(info.get("return_value"))

    def attach(self, stream: Any) -> None:
        with self._lock:
            self._stream = stream
        if stream is not None and self.stop.is_set():
            self.abort()

    def abort(self) -> None:
        """Stop the worker now: shutting the socket down wakes a read blocked on it.

        Should the guess be wrong, the worker ends on its own read timeout; the caller
        never waits for it.
        """
        self.stop.set()
        with self._lock:
            stream = self._stream
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


def server_count(value: Any) -> int | None:
    """A count the server reported, or None when it is no plausible count (JSON allows 1e999 and NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value) if 0 <= value <= _MAX_COUNT else None


def server_rate(value: Any) -> float | None:
    """A positive rate the server reported, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= _MAX_COUNT:
        return None
    return float(value) if math.isfinite(value) else None
