"""One monotonic clock per conversational turn."""

from __future__ import annotations

from app.core.events import now_ns


class TurnClock:
    """Records named stage marks (first occurrence wins) in perf_counter ns."""

    def __init__(self, start_ns: int | None = None) -> None:
        self.start_ns = now_ns() if start_ns is None else start_ns
        self.marks: dict[str, int] = {}

    def mark(self, name: str, t_ns: int | None = None) -> int:
        t = now_ns() if t_ns is None else t_ns
        self.marks.setdefault(name, t)
        return self.marks[name]

    def ms_between(self, start: str, end: str) -> float | None:
        if start not in self.marks or end not in self.marks:
            return None
        return (self.marks[end] - self.marks[start]) / 1e6

    def ms_since_start(self, name: str) -> float | None:
        if name not in self.marks:
            return None
        return (self.marks[name] - self.start_ns) / 1e6
