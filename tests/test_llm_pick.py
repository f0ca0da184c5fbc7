"""The LLM file a machine runs: the shipped Q4_1 or its Q8_0 copy, timed once per CPU, then remembered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.engines import llm_pick
from app.engines.llm_quantize import q8_path_for
from app.model_registry import resolve


@pytest.fixture(scope="module")
def source() -> Path:
    return resolve("llm", None)


def test_the_first_start_times_both_files_and_later_starts_reuse_the_choice(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = llm_pick.picked(source, tmp_path, threads=2, rounds=1)
    copy = q8_path_for(source, tmp_path)
    assert first in (source, copy) and copy.exists()
    choice = llm_pick.remembered(source, tmp_path, threads=2)
    assert choice is not None and choice["file"] in ("shipped", "q8_0")
    assert set(choice["ms"]) == {"shipped", "q8_0"} and all(ms > 0 for ms in choice["ms"].values())
    assert (first == copy) == (choice["file"] == "q8_0")

    def no_second_measurement(*_args, **_kwargs):
        raise AssertionError("the remembered choice must be used")

    monkeypatch.setattr(llm_pick, "reply_start_ms", no_second_measurement)
    assert llm_pick.picked(source, tmp_path, threads=2) == first
    assert llm_pick.remembered(source, tmp_path, threads=4) is None  # another thread count is measured anew


def test_the_faster_file_wins_and_a_damaged_choices_file_is_measured_again(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / llm_pick.CHOICES_FILE).write_text("{not json", encoding="utf-8")
    copy = q8_path_for(source, tmp_path)
    fixed = {source: 300.0, copy: 250.0}  # deterministic timings stand in for the machine's
    monkeypatch.setattr(llm_pick, "reply_start_ms", lambda model, threads, rounds: [fixed[Path(model)]])
    assert llm_pick.picked(source, tmp_path, threads=2) == copy
    stored = json.loads((tmp_path / llm_pick.CHOICES_FILE).read_text(encoding="utf-8"))
    (entry,) = stored.values()
    assert entry["file"] == "q8_0" and entry["ms"] == {"shipped": 300.0, "q8_0": 250.0}


def test_a_file_with_nothing_to_compare_runs_as_it_is(tmp_path: Path) -> None:
    q8 = tmp_path / "model.Q8_0.gguf"
    q8.write_bytes(b"GGUF")
    assert llm_pick.picked(q8, tmp_path / "cache", threads=2) == q8
    assert not (tmp_path / "cache" / llm_pick.CHOICES_FILE).exists()


def test_a_failed_measurement_runs_the_shipped_file(source: Path, tmp_path: Path, monkeypatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(llm_pick, "reply_start_ms", broken)
    assert llm_pick.picked(source, tmp_path, threads=2) == source
    assert llm_pick.remembered(source, tmp_path, threads=2) is None  # measured again next time


def test_the_copy_must_win_by_a_margin(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Within noise the shipped file stays: the copy costs ~50 MB more resident memory."""
    copy = q8_path_for(source, tmp_path)
    fixed = {source: 300.0, copy: 295.0}
    monkeypatch.setattr(llm_pick, "reply_start_ms", lambda model, threads, rounds: [fixed[Path(model)]])
    assert llm_pick.picked(source, tmp_path, threads=2) == source
