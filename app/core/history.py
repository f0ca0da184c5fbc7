"""The conversation as the LLM sees it, and the log written as it happens."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from app.core.engines import ChatMessage

_log = logging.getLogger(__name__)
ELLIPSIS = " … "


class History:
    """System prompt plus alternating turns, trimmed oldest-first to fit the context.

    The persona (system prompt) is never trimmed.  Trimming drops whole
    user/assistant pairs, and when it must trim it goes down to ``LOW_WATER``
    of the budget: every trim changes the prefix the KV cache holds, so the
    whole prompt is evaluated again.  Dropping one pair per turn would do that
    on every turn of a long conversation (a 1,900-token prompt is 25 s on two
    busy cores; the soak found it); with the low-water mark it happens once
    every several turns.
    """

    LOW_WATER = 0.6

    def __init__(
        self,
        system_prompt: str,
        budget_tokens: int,
        count_tokens: Callable[[Sequence[ChatMessage]], int],
        history_tokens: int | None = None,
    ):
        """``budget_tokens``: the whole prompt; ``history_tokens``: the persona and past turns within it.

        A smaller history keeps every reply fast (each of its tokens attends to the whole
        prompt) while a long new message may still use the rest of the context.
        """
        self.system = ChatMessage("system", system_prompt)
        self.turns: list[ChatMessage] = []
        self.budget_tokens = budget_tokens
        self.history_tokens = min(budget_tokens, history_tokens or budget_tokens)
        self._count = count_tokens
        self._lock = threading.Lock()

    def messages_for(self, user_text: str) -> list[ChatMessage]:
        """The prompt for a new user message (trims old turns, then the message itself, if needed)."""
        with self._lock:
            self._trim_past()
            limit = self.budget_tokens
            while True:
                msgs = [self.system, *self.turns, ChatMessage("user", user_text)]
                if self._count(msgs) <= limit:
                    return msgs
                if len(self.turns) < 2:
                    if self._count(msgs) <= self.budget_tokens:
                        return msgs
                    return [self.system, ChatMessage("user", self._fit(user_text))]
                del self.turns[:2]  # a long message: room for it before the history
                limit = int(self.budget_tokens * self.LOW_WATER)  # trimming anyway: make room for several turns

    def fit(self, user_text: str) -> str:
        """``user_text`` as the LLM will see it: whole if it fits beside the persona, else cut.

        A message too long for the context (a pasted page, a long monologue) keeps
        its beginning and its end, where a question usually is, joined by an
        ellipsis; the log and the transcript still hold every word.
        """
        with self._lock:
            return self._fit(user_text)

    def _fit(self, user_text: str) -> str:
        def fits(text: str) -> bool:
            return self._count([self.system, ChatMessage("user", text)]) <= self.budget_tokens

        if fits(user_text):
            return user_text
        lo, hi = 0, len(user_text)  # the longest cut that fits, by bisection over its length
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(_cut(user_text, mid)):
                lo = mid
            else:
                hi = mid - 1
        return _cut(user_text, lo)

    def record(self, user_text: str, reply_text: str) -> None:
        """Store a finished turn; an empty reply (cancelled before speaking) keeps the user's words."""
        with self._lock:
            self.turns.append(ChatMessage("user", user_text))
            self.turns.append(ChatMessage("assistant", reply_text))

    def set_system_prompt(self, prompt: str) -> None:
        with self._lock:
            self.system = ChatMessage("system", prompt)

    def snapshot(self) -> list[ChatMessage]:
        """The history as the next prompt will start: trimmed by the same rule as ``messages_for``.

        The conversation prefills this between turns; untrimmed, one long message in the
        history made that prefill run past the model's context (llama_decode failed after
        evaluating 2,048 tokens, which shutdown could not interrupt).
        """
        with self._lock:
            self._trim_past()
            return [self.system, *self.turns]

    def _trim_past(self) -> None:
        """Drop the oldest pairs once the past outgrows ``history_tokens``, down to ``LOW_WATER`` of it."""
        limit = self.history_tokens
        while self.turns and self._count([self.system, *self.turns]) > limit:
            del self.turns[:2]
            limit = int(self.history_tokens * self.LOW_WATER)  # trimming anyway: make room for several turns


def _cut(text: str, n: int) -> str:
    """About ``n`` characters of ``text``: two thirds from its start, one third from its end."""
    if n <= 0:
        return ""
    head = n * 2 // 3
    return text[:head].rstrip() + ELLIPSIS + text[len(text) - (n - head) :].lstrip()


class JsonlLog:
    """Appends one JSON object per line, each in a single ``write`` call on an O_APPEND file.

    A crash (even ``kill -9``) loses at most the line being written, never a
    finished one.  A line cut short by a crash is left alone: the next write
    starts on a fresh line, so it cannot corrupt the record after it, and
    ``read_log`` skips it.  A full disk must not end the conversation: the
    record is dropped and ``on_error`` hears about it once (again only after a
    write has succeeded in between).
    """

    def __init__(self, path: Path, on_error: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.on_error = on_error
        self.error = ""  # why the last write failed ("" while writes succeed)
        self.dropped = 0  # records lost to write failures
        self._lock = threading.Lock()
        self._line_start_checked = False
        with contextlib.suppress(OSError):  # an unwritable folder is reported by the first write
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def in_dir(cls, directory: str | Path) -> JsonlLog:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cls(Path(directory) / f"conversation-{stamp}.jsonl")

    def write(self, record: dict) -> bool:
        """Append ``record``; False (and one report) when it could not be written."""
        text = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        # A lone surrogate (odd typed input) cannot be UTF-8: write it as the JSON escape it stands for.
        data = text.encode("utf-8", "backslashreplace")
        with self._lock:
            try:
                self._append(data)
            except OSError as exc:
                self.dropped += 1
                report = not self.error  # once per run of failures, not once per turn
                self.error = message = _write_error(self.path, exc)
            else:
                self.error = ""
                return True
        if report:
            _log.warning("%s", message)
            if self.on_error is not None:
                self.on_error(message)
        return False

    def _append(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)  # a conversation is private
        try:
            size = os.fstat(fd).st_size
            if not self._line_start_checked:
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # the previous run died mid-line: do not glue onto it
                self._line_start_checked = True
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError:
                # A full disk can take half a line: take it back, or have the next write start afresh.
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    self._line_start_checked = False
                raise
        finally:
            os.close(fd)


def _write_error(path: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"Conversation log not written: the disk is full ({path}). The conversation goes on; "
            "free some space and logging resumes."
        )
    return f"Conversation log not written: {exc.strerror or exc} ({path}). The conversation goes on without it."


def read_log(path: str | Path) -> list[dict]:
    """Every complete record of a conversation log; a line cut short by a crash is skipped with a warning."""
    records: list[dict] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError is one
                _log.warning("%s line %d is not a complete record (cut short by a crash?); skipped", path, number)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records
