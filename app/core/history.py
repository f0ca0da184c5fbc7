"""The conversation as the LLM sees it, and the log written as it happens."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from app.core.engines import ChatMessage


class History:
    """System prompt plus alternating turns, trimmed oldest-first to fit the context.

    The persona (system prompt) is never trimmed.  Trimming drops whole
    user/assistant pairs, so the prefix the KV cache holds changes only when
    it must.
    """

    def __init__(self, system_prompt: str, budget_tokens: int, count_tokens: Callable[[Sequence[ChatMessage]], int]):
        self.system = ChatMessage("system", system_prompt)
        self.turns: list[ChatMessage] = []
        self.budget_tokens = budget_tokens
        self._count = count_tokens
        self._lock = threading.Lock()

    def messages_for(self, user_text: str) -> list[ChatMessage]:
        """The prompt for a new user message (trims old turns if needed)."""
        with self._lock:
            while True:
                msgs = [self.system, *self.turns, ChatMessage("user", user_text)]
                if len(self.turns) < 2 or self._count(msgs) <= self.budget_tokens:
                    return msgs
                del self.turns[:2]

    def record(self, user_text: str, reply_text: str) -> None:
        """Store a finished turn; an empty reply (cancelled before speaking) keeps the user's words."""
        with self._lock:
            self.turns.append(ChatMessage("user", user_text))
            self.turns.append(ChatMessage("assistant", reply_text))

    def set_system_prompt(self, prompt: str) -> None:
        with self._lock:
            self.system = ChatMessage("system", prompt)

    def snapshot(self) -> list[ChatMessage]:
        with self._lock:
            return [self.system, *self.turns]


class JsonlLog:
    """Appends one JSON object per line and flushes it at once: nothing is lost on a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @classmethod
    def in_dir(cls, directory: str | Path) -> JsonlLog:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cls(Path(directory) / f"conversation-{stamp}.jsonl")

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
