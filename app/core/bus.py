"""A small thread-safe publish/subscribe bus for core events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.core.events import Event

Subscriber = Callable[[Event], None]
_log = logging.getLogger(__name__)


class EventBus:
    """Delivers each event synchronously to every subscriber, on the publisher's thread.

    Subscribers must be quick (append to a queue, emit a Qt signal); a failing
    subscriber is logged and does not stop the others.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:  # a broken view must not break the conversation
                _log.exception("event subscriber failed on %s", type(event).__name__)
