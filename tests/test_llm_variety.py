"""A reply does not copy an earlier reply (DRY shown the session's own words); the real SmolLM2, greedy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core.engines import ChatMessage
from app.engines.llm_variety import NoRepeat

# The long session of the 07:12 bench: the reply to the fifth question, then to most of the others.
STUCK = "The best thing you can do is to take a few deep breaths, and try not to think about work at all."


def _conversation(question: str) -> list[ChatMessage]:
    return [
        ChatMessage("system", "You are Joe, a friendly person on a video call. Answer in one or two short sentences."),
        ChatMessage("user", "What can I do to feel less stressed at work?"),
        ChatMessage("assistant", STUCK),
        ChatMessage("user", "Is it better to walk or cycle to the office?"),
        ChatMessage("assistant", STUCK),
        ChatMessage("user", question),
    ]


@pytest.fixture
def greedy_llm(llm) -> Iterator:
    sampling, rule = llm.sampling, llm.variety.rule
    llm.sampling = {**sampling, "temp": 0.0}
    try:
        yield llm
    finally:
        llm.sampling, llm.variety.rule = sampling, rule


def _reply(llm, messages: list[ChatMessage], rule: NoRepeat | None) -> str:
    llm.variety.rule = rule
    return "".join(t.text for t in llm.stream_chat(messages))


def test_a_reply_does_not_copy_an_earlier_reply(greedy_llm) -> None:
    messages = _conversation("How do bees make honey?")
    copied = _reply(greedy_llm, messages, None)
    assert copied == STUCK  # the model left to itself: what the bench heard
    reply = _reply(greedy_llm, messages, NoRepeat())
    assert reply.strip()
    words = STUCK.split()
    assert " ".join(words[:8]) not in reply  # no clause of it, not only a different ending
    assert any(w in reply.lower() for w in ("bee", "honey"))


def test_a_first_reply_is_sampled_as_the_library_would(greedy_llm) -> None:
    """No earlier reply (the few-shot ones are not shown): no DRY step, and top-k first changes no greedy token."""
    system = ChatMessage("system", "You are Joe, a friendly person on a video call.")
    asks = ("What is the capital city of France?", "Tell me a long story about a dragon and a knight.")
    ours = [_reply(greedy_llm, [system, ChatMessage("user", ask)], NoRepeat()) for ask in asks]
    greedy_llm._llm._init_sampler = greedy_llm.variety._library_sampler  # llama-cpp-python's own chain
    try:
        library = [_reply(greedy_llm, [system, ChatMessage("user", ask)], NoRepeat()) for ask in asks]
    finally:
        greedy_llm.variety.install()
    assert "Paris" in ours[0]
    assert len(ours[1].split()) > 40  # long enough for the repeat penalty to shape it
    assert ours == library
