"""Fall back to the local model when a remote LLM fails before it says anything."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

from app.core.cancel import NEVER_CANCELLED, CancelToken
from app.core.engines import ChatMessage, GenerationStats, LlmEngine, Token
from app.engines.llm_errors import LlmBackendError

log = logging.getLogger(__name__)


class FallbackLlm:
    """Streams from ``primary``; if it fails before its first token, from ``fallback`` instead.

    After such a failure the primary is skipped for ``retry_primary_after_s`` so
    that each turn does not pay its timeout again.  Failures after the first
    token are raised: the replica has already started speaking that reply.
    """

    def __init__(
        self,
        primary: LlmEngine,
        fallback: LlmEngine,
        *,
        label: str = "local (fallback)",
        retry_primary_after_s: float = 30.0,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.label = label
        self.retry_primary_after_s = retry_primary_after_s
        self.name = primary.name
        self.context_tokens = min(primary.context_tokens, fallback.context_tokens)
        self.last_error = ""
        self.used_fallback = False
        self._skip_primary_until = 0.0

    @property
    def last_stats(self) -> GenerationStats:
        if not self.used_fallback:
            return self.primary.last_stats
        return replace(self.fallback.last_stats, backend=self.label, error=self.last_error)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return max(self.primary.count_tokens(messages), self.fallback.count_tokens(messages))

    def stream_chat(self, messages: Sequence[ChatMessage], cancel: CancelToken = NEVER_CANCELLED) -> Iterator[Token]:
        self.used_fallback = False
        if time.monotonic() >= self._skip_primary_until:
            self.last_error = ""
            started = False
            try:
                for token in self.primary.stream_chat(messages, cancel):
                    started = True
                    yield token
                return
            except LlmBackendError as exc:
                if started:
                    raise
                self.last_error = str(exc)
                self._skip_primary_until = time.monotonic() + self.retry_primary_after_s
            log.warning("LLM %s failed, answering with %s: %s", self.primary.name, self.label, self.last_error)
        if cancel.cancelled:
            return
        self.used_fallback = True
        yield from self.fallback.stream_chat(messages, cancel)
