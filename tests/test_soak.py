"""The soak's short form: one cycle of every kind of turn leaves no thread, no fd and no half record behind.

The 200-turn run (memory growth, docs/soak.md) is a benchmark: ``python -m app.bench.soak``.
"""

from __future__ import annotations

import json

from app.bench.soak import RECORD_KEYS, SoakPlan, run_soak


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
