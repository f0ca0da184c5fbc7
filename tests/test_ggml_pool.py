"""The persistent ggml thread team: the LLM says the same with or without it, on any thread count."""

from __future__ import annotations

import pytest

from app.core.engines import ChatMessage
from app.engines import ggml_pool

QUESTION = [ChatMessage("user", "Name three colours of the rainbow.")]


def _greedy_reply(llm) -> list[str]:
    return [token.text for token in llm.stream_chat(QUESTION)]


@pytest.fixture
def greedy_llm(llm):
    """The session's engine with greedy sampling; threads, team and sampling restored afterwards."""
    sampling, threads = llm.sampling, llm.threads
    llm.sampling = {**sampling, "temp": 0.0}
    try:
        yield llm
    finally:
        llm.sampling = sampling
        llm.set_threads(threads)
        llm.use_thread_team(True)


def test_the_engine_decodes_on_a_team_and_says_the_same_without_it(greedy_llm) -> None:
    assert greedy_llm.thread_team, "the bundled llama.cpp build exports the threadpool API"
    on = _greedy_reply(greedy_llm)
    greedy_llm.use_thread_team(False)
    assert not greedy_llm.thread_team
    off = _greedy_reply(greedy_llm)
    greedy_llm.use_thread_team(True)
    again = _greedy_reply(greedy_llm)  # the team was paused after the last reply: decoding wakes it
    assert on and on == off == again


def test_one_thread_on_a_two_thread_team_says_the_same(greedy_llm) -> None:
    greedy_llm.set_threads(2)
    two = _greedy_reply(greedy_llm)
    greedy_llm.set_threads(1)
    one = _greedy_reply(greedy_llm)
    assert greedy_llm.thread_team
    assert two and one == two


def test_the_bare_decode_ceiling_runs_on_the_team_at_any_depth(greedy_llm) -> None:
    assert greedy_llm.raw_decode_tps(8) > 0
    assert greedy_llm.raw_decode_tps(8, depth=200) > 0  # llama-bench's -d: a prompt's worth of cache first
    assert _greedy_reply(greedy_llm), "the context is usable after the ceiling's decodes"


def test_without_the_threadpool_symbols_a_team_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """An older or foreign llama.cpp build: the engine keeps ggml's worker per token."""
    monkeypatch.setattr(ggml_pool, "_libraries", lambda: None)
    team = ggml_pool.ThreadTeam(2)
    assert not team.attach(object())
    assert not team.active
    team.pause()
    team.detach()
    team.free()


def test_a_team_that_decodes_differently_or_fails_is_not_used(greedy_llm, monkeypatch: pytest.MonkeyPatch) -> None:
    """The load check: a rejected or broken team leaves the context decoding with a worker per token."""
    before = _greedy_reply(greedy_llm)
    monkeypatch.setattr(ggml_pool, "_decodes_alike", lambda llm, team: False)
    assert ggml_pool.checked_team(greedy_llm._llm, 2) is None

    def broken(llm, team):
        raise RuntimeError("decode failed")

    monkeypatch.setattr(ggml_pool, "_decodes_alike", broken)
    assert ggml_pool.checked_team(greedy_llm._llm, 2) is None
    greedy_llm.use_thread_team(False)
    assert _greedy_reply(greedy_llm) == before  # the context was left without any team attached


def test_the_real_check_accepts_the_shipped_model(greedy_llm) -> None:
    team = ggml_pool.checked_team(greedy_llm._llm, 2)
    try:
        assert team is not None and team.active
    finally:
        if team is not None:
            team.detach()
            team.free()
        greedy_llm.use_thread_team(True)
