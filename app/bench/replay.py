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
    """The session's LLM, unchanged, remembering the messages of every reply it was asked for (and its tokens)."""

    def __init__(self, llm: Any) -> None:
        self.inner = llm
        self.prompts: list[list[ChatMessage]] = []
        self.replies: dict[int, list[int]] = {}  # prompt index -> the reply's token ids (local engine)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy or unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def stream_chat(self, messages: Sequence[ChatMessage], cancel: CancelToken = NEVER_CANCELLED) -> Iterator[Token]:
        """The engine's reply, its prompt noted first and its token ids once it has ended."""
        self.prompts.append(list(messages))
        index = len(self.prompts) - 1
        try:
            yield from self.inner.stream_chat(messages, cancel)
        finally:
            stats = getattr(self.inner, "last_stats", None)
            if stats is not None and stats.reply_ids:
                self.replies[index] = list(stats.reply_ids)

    def index_of(self, prompt: list[ChatMessage]) -> int | None:
        """Which request ``prompt`` (an entry of ``prompts``) was."""
        return next((i for i in range(len(self.prompts) - 1, -1, -1) if self.prompts[i] is prompt), None)

    def reply_for(self, prompt: list[ChatMessage]) -> list[int]:
        """The token ids of the (last) reply to ``prompt``, or [] when the backend gave none."""
        index = self.index_of(prompt)
        return self.replies.get(index, []) if index is not None else []

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


def _tps(stamps: Sequence[float]) -> float | None:
    """Tokens per second from the first token to the last, as the pipeline's TPS is measured."""
    n = len(stamps)
    return (n - 1) / (stamps[-1] - stamps[0]) if n >= 2 and stamps[-1] > stamps[0] else None


def _stamps(tokens: Iterator[Any]) -> list[float]:
    stamps = []
    for _token in tokens:
        stamps.append(time.perf_counter())
    return stamps


def replay(llm: Any, prompts: Sequence[Sequence[ChatMessage]]) -> list[dict]:
    """Each prompt through ``llm.stream_chat`` alone: tokens and TPS measured as the pipeline's metric is."""
    count = getattr(llm, "prompt_tokens", None)
    rows = []
    for messages in prompts:
        stamps = _stamps(llm.stream_chat(messages))
        rows.append(
            {"n_tokens": len(stamps), "tps": _tps(stamps), "prompt_tokens": len(count(messages)) if count else None}
        )
    return rows


class BetweenTurns:
    """Decodes the reply that just ended again on the engine alone, before the next input plays.

    This host's speed swings by a fifth within seconds, so a baseline measured
    after the session compares a turn with another moment.  Between turns the
    conversation is idle (the bench holds the face still), and the engine
    decodes the turn's very prompt and tokens; the pipeline's TPS for that turn
    is compared with this, seconds apart.  Then it answers the turn's words after
    the persona alone, as the bench's direct calls do (``persona_tps``), and puts
    the conversation's KV cache back for the next turn.
    """

    def __init__(self, recorder: PromptRecorder) -> None:
        self.recorder = recorder
        self.given_tps: dict[int, float | None] = {}  # request index -> TPS on the same prompt and tokens
        self.persona_tps: dict[int, float | None] = {}  # request index -> TPS on the persona and the words alone

    def __call__(self) -> None:
        replies, engine = self.recorder.replies, self.recorder.inner
        index = max(replies, default=None)
        decode = getattr(engine, "decode_given", None)
        if index is None or index in self.given_tps or decode is None or len(replies[index]) < 2:
            return
        prompt = self.recorder.prompts[index]
        self.given_tps[index] = _tps(_stamps(decode(prompt, replies[index])))
        kept = getattr(engine, "cache_kept", None)
        if kept is not None:
            alone = [m for m in prompt[:1] if m.role == "system"] + prompt[-1:]
            with kept():
                self.persona_tps[index] = _tps(_stamps(engine.stream_chat(alone)))


def with_replay(engines: Any, run_session: Any) -> dict:
    """``run_session(engines, between_turns)`` with the LLM recorded; its turns' prompts replayed on the engine alone.

    ``between_turns`` is called when a reply has ended and before the next input
    plays (``BetweenTurns``).  The record gets ``same_prompts_alone``: one row per
    committed turn whose prompt was found, with ``turn`` its index in
    ``record["turns"]``, ``given_tps`` when it was decoded between turns and ``persona_tps``
    when the engine answered the turn's words after the persona alone there.
    """
    from dataclasses import replace

    from app.bench.baselines import in_own_thread

    recorder = PromptRecorder(engines.llm)
    between = BetweenTurns(recorder)
    record = run_session(replace(engines, llm=recorder), between)
    turns, prompts = [], []
    for index, turn in enumerate(record["turns"]):
        for prompt in recorder.prompts_for([turn.get("heard")]):
            turns.append(index)
            prompts.append(prompt)
    rows = in_own_thread(lambda: replay(engines.llm, prompts))
    for index, prompt, row in zip(turns, prompts, rows, strict=True):
        row["turn"] = index  # into record["turns"]: pairs the turn's TPS with its replay
        given = between.given_tps.get(recorder.index_of(prompt))
        if given is not None:
            row["given_tps"] = given
            row["given_tokens"] = len(recorder.reply_for(prompt))
        persona = between.persona_tps.get(recorder.index_of(prompt))
        if persona is not None:
            row["persona_tps"] = persona
    record["same_prompts_alone"] = rows
    return record
