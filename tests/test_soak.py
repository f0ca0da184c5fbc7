"""The soak's short form: one cycle of every kind of turn leaves no thread, no fd and no half record behind.

The 200-turn run (memory growth, docs/soak.md) is a benchmark: ``python -m app.bench.soak``.
"""

from __future__ import annotations

import json

from app.bench.soak import RECORD_KEYS, SoakPlan, run_soak
from app.core.history import History


def test_one_cycle_of_mixed_turns_leaks_nothing(config, engines, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(engines.llm, "max_tokens", 16)
    record = run_soak(engines, config, tmp_path, SoakPlan(turns=5, warmup_turns=1, max_reply_tokens=16))
    assert record["kinds"] == {"spoken": 1, "typed": 1, "barge_in": 1, "stopped": 1}
    assert record["turns_ended"] >= 5 and not record["stuck"]
    assert record["interrupted"] >= 1  # the Esc at least; the barge-in too unless its reply was over first
    log = record["log"]
    assert log["lines"] == log["records"] == log["complete_records"] == record["turns_ended"]
    assert log["turn_ids_match"]
    lines = (tmp_path / "soak.jsonl").read_text(encoding="utf-8").splitlines()
    assert all(set(json.loads(line)) >= set(RECORD_KEYS) for line in lines)
    assert record["clean_shutdown"]
    threads, fds = record["threads"], record["fds"]
    assert threads["leftover"] == []
    # Python threads, not OS ones: the engines' native pools may start during the first turns and stay.
    assert threads["python_after_shutdown"] <= threads["python_before"], threads
    assert fds["after_shutdown"] <= fds["before"], fds
    assert (tmp_path / "soak.md").read_text(encoding="utf-8").startswith("| measure | value |")


def test_a_long_conversation_re_evaluates_the_whole_prompt_only_now_and_then(llm) -> None:
    """Once the history fills the context, trimming must not change the cached prefix on every turn."""
    budget = 600
    history = History("You are Joe.", budget, llm.count_tokens)
    prefix_changes, sizes = 0, []
    first = None
    for i in range(60):
        question = f"Question {i}: what do you think about topic number {i} and why?"
        messages = history.messages_for(question)
        sizes.append(llm.count_tokens(messages))
        head = history.turns[0] if history.turns else None
        if first is not None and head is not first:
            prefix_changes += 1
        first = head
        history.record(question, f"Answer {i}: " + "I think it is quite interesting, really. " * 4)
    assert max(sizes) <= budget
    assert sizes[-1] > 0.4 * budget  # the history is used, not thrown away
    assert 1 <= prefix_changes <= 60 // 4, prefix_changes


def test_the_history_prefilled_between_turns_fits_and_is_the_next_prompts_prefix(llm) -> None:
    """After a message far too long for the context, what is prefilled still fits, and the next prompt extends it."""
    history = History("You are Joe.", 600, llm.count_tokens)
    history.record("Hello!", "Hi there.")
    pasted = " ".join(f"word{i}" for i in range(3000))
    history.record(pasted, "That is a lot of words.")
    prefill = history.snapshot()
    assert llm.count_tokens(prefill) <= 600 and prefill[0].role == "system"
    assert all(m.content != pasted for m in prefill)
    following = history.messages_for("What was that about?")
    assert following[: len(prefill)] == prefill


def test_the_history_budget_bounds_the_past_but_not_a_long_new_message(llm) -> None:
    """Past turns stay within ``history_tokens`` (fast replies); a long message may still use the context."""
    history = History("You are Joe.", 1500, llm.count_tokens, history_tokens=300)
    past_sizes = []
    for i in range(30):
        history.messages_for(f"Question {i}: what do you think about topic number {i}?")
        past_sizes.append(llm.count_tokens(history.snapshot()))
        history.record(f"Question {i}: what do you think about topic number {i}?", "I think it is lovely. " * 5)
    assert max(past_sizes) <= 300
    assert past_sizes[-1] > 0.4 * 300  # trimmed to a low-water mark, not emptied
    long_message = " ".join(f"word{i}" for i in range(200))
    prompt = history.messages_for(long_message)
    assert llm.count_tokens(prompt[-1:]) > 300  # beyond the history budget
    assert prompt[-1].content == long_message  # whole: within the context
    assert llm.count_tokens(prompt) <= 1500
