"""The bench's own thread must not wake beside the LLM it measures more than it has to."""

from __future__ import annotations

import threading

import pytest

from app.bench import event_log
from app.core import events as ev


def test_the_bench_waits_on_events_not_on_a_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench's thread sleeps through streamed tokens and wakes on the events that can end its waits."""
    monkeypatch.setattr(event_log, "_LOOK_S", 30.0)  # no look by time: only an event can end the wait
    log = event_log.EventLog()
    seen = log.seq
    waiter = threading.Thread(target=log.wait_after, args=(seen, 30.0))
    waiter.start()
    log(ev.LlmToken(1, "Hi", 0))
    waiter.join(0.2)
    assert waiter.is_alive() and log.seq == seen  # a token is not a reason to look
    log(ev.LlmDone(1, "Hi", 1))
    waiter.join(5.0)
    assert not waiter.is_alive() and log.seq == seen + 1
