"""The engine alone on the pipeline's own prompts: the like-for-like baseline for pipeline TPS.

The bench's direct calls ask each question after the persona alone (~180
tokens), while a pipeline turn decodes after the persona *and* the history
(up to ``history_tokens``), and every token attends to all of it: bare decode
is ~10-15 % slower at 640 tokens than at 180.  Replaying the very prompts the
pipeline's turns used, through the same engine with nothing else running,
separates what the pipeline costs from what the history costs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from app.core.cancel import NEVER_CANCELLED, CancelToken
from app.core.engines import ChatMessage, Token


class PromptRecorder:
    """The session's LLM, unchanged, remembering the messages of every reply it was asked for."""

    def __init__(self, llm: Any) -> None:
        self.inner = llm
        self.prompts: list[list[ChatMessage]] = []

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy or unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def stream_chat(self, messages: Sequence[ChatMessage], cancel: CancelToken = NEVER_CANCELLED) -> Iterator[Token]:
        """The engine's reply, its prompt noted first."""
        self.prompts.append(list(messages))
        return self.inner.stream_chat(messages, cancel)

    def prompts_for(self, heard: Sequence[str | None]) -> list[list[ChatMessage]]:
        """The last prompt whose final user message is each committed turn's transcript (speculations dropped)."""
        out = []
        for text in heard:
            if not text:
                continue
            said = text.strip()
            spoken = [p for p in reversed(self.prompts) if p]
            # The turn's own words first; a prompt that only ends with them carries words of an earlier turn.
            match = next((p for p in spoken if p[-1].content.strip() == said), None) or next(
                (p for p in spoken if p[-1].content.strip().endswith(said)), None
            )
            if match is not None:
                out.append(match)
        return out


def replay(llm: Any, prompts: Sequence[Sequence[ChatMessage]]) -> list[dict]:
    """Each prompt through ``llm.stream_chat`` alone: tokens and TPS measured as the pipeline's metric is."""
    rows = []
    for messages in prompts:
        stamps: list[float] = []
        token: Token
        for token in llm.stream_chat(messages):
            stamps.append(time.perf_counter())
            del token
        n = len(stamps)
        tps = (n - 1) / (stamps[-1] - stamps[0]) if n >= 2 and stamps[-1] > stamps[0] else None
        count = getattr(llm, "prompt_tokens", None)
        rows.append({"n_tokens": n, "tps": tps, "prompt_tokens": len(count(messages)) if count else None})
    return rows


def with_replay(engines: Any, run_session: Any) -> dict:
    """``run_session(engines)`` with the LLM recorded, then its turns' prompts replayed on the engine alone.

    The record gets ``same_prompts_alone``: one row per committed turn whose prompt was found.
    """
    from dataclasses import replace

    from app.bench.baselines import in_own_thread

    recorder = PromptRecorder(engines.llm)
    record = run_session(replace(engines, llm=recorder))
    prompts = recorder.prompts_for([turn.get("heard") for turn in record["turns"]])
    record["same_prompts_alone"] = in_own_thread(lambda: replay(engines.llm, prompts))
    return record
