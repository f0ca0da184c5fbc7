"""`doppel bench`: the report's structure and sanity (not its speed), on the session's models."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

import cv2
import pytest

from app.bench import report
from app.bench.runner import Plan, run_bench
from app.cli import build_parser, config_from_args

# Metrics that need the replica; everything else must have samples in any run.
FRAME_METRICS = {"first_replica_frame_ms", "speech_end_to_first_frame_ms"}


@pytest.fixture(scope="module")
def quick(engines, config, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    run_bench(engines, config, out, replace(Plan.quick(), budget_s=600.0))  # a busy machine may be slow
    return json.loads((out / "bench.json").read_text()), out


def test_every_metric_has_sane_percentiles(quick) -> None:
    doc, _ = quick
    result = doc["backends"]["local"]
    has_face = result["session"]["render"]["available"]
    for stage in report.STAGES:
        s = result["analysis"]["pipeline"][stage.key]
        if stage.key in FRAME_METRICS and not has_face:
            assert s["n"] == 0
            continue
        assert s["n"] >= 1, stage.key
        assert s["p50"] <= s["p90"] <= s["max"], (stage.key, s)
    p = result["analysis"]["pipeline"]
    assert p["ttft_ms"]["p50"] > 0 and p["effective_ttft_ms"]["p50"] > 0 and p["tps"]["p50"] > 0
    assert p["speech_end_to_first_audio_ms"]["p50"] > p["vad_end_of_turn_ms"]["p50"]
    assert result["session"]["barge_ins"][0]["happened"]


def test_ratios_are_recomputable_from_the_raw_samples(quick) -> None:
    doc, _ = quick
    result = doc["backends"]["local"]
    turns = [t["metrics"]["speech_end_to_first_audio_ms"] for t in result["session"]["turns"]]
    raw = [d["raw_e2e_audio_ms"] for d in result["direct"]]
    naive = [d["naive_e2e_audio_ms"] for d in result["direct"]]
    ratios = result["analysis"]["ratios"]
    pipeline = statistics.median(v for v in turns if v is not None)
    assert ratios["pipeline_over_raw"]["speech_end_to_first_audio_ms"] == pytest.approx(
        pipeline / statistics.median(raw)
    )
    assert ratios["naive_over_pipeline"]["speech_end_to_first_audio_ms"] == pytest.approx(
        statistics.median(naive) / pipeline
    )
    for d in result["direct"]:  # the naive chain waits for everything the raw limit only starts
        assert d["naive_e2e_audio_ms"] >= d["raw_e2e_audio_ms"] - d["tts_first_ms"]
        assert d["llm_latency_ms"] == pytest.approx(20 / d["tps"] * 1000 + d["ttft_ms"])
    # Each question's reply was decoded again between turns, on the engine alone, and paired with its turn.
    session = result["session"]
    given = [r for r in session["same_prompts_alone"] if r.get("given_tps")]
    assert any(session["turns"][r["turn"]]["input"].startswith("q") for r in given)
    paired = [session["turns"][r["turn"]]["metrics"]["tps"] / r["given_tps"] for r in given]
    assert result["analysis"]["same_prompts"]["pipeline_over_given"]["p50"] == pytest.approx(statistics.median(paired))
    # And the question answered after the persona alone, as the direct calls do, between the same turns.
    alone = [r for r in session["same_prompts_alone"] if r.get("persona_tps")]
    each = [session["turns"][r["turn"]]["metrics"]["tps"] / r["persona_tps"] for r in alone]
    persona = result["analysis"]["same_prompts"]["pipeline_over_persona_paired"]
    assert alone and persona["p50"] == pytest.approx(statistics.median(each))
    # Each question's engine TPS is paired with the bare decode timed right after it.
    bare = [d["tps"] / d["raw_decode_tps"] for d in result["direct"] if d.get("tps")]
    assert result["analysis"]["ratios"]["engine_over_bare_paired"]["p50"] == pytest.approx(statistics.median(bare))


def test_report_files_and_records(quick) -> None:
    doc, out = quick
    image = cv2.imread(str(out / "bench.png"))
    assert image is not None and image.shape[0] > 500 and image.shape[1] > 1000
    md = (out / "bench.md").read_text()
    for stage in report.STAGES:
        assert stage.label in md
    assert "Tavus with Cerebras" in md and "naive ÷ pipeline" in md
    assert doc["machine"]["cores"] and doc["machine"]["packages"]["numpy"]
    assert {"asr", "llm", "voice"} <= set(doc["models"])
    assert len(doc["inputs"]) == 5 and all(i["vad_turns"] == 1 for i in doc["inputs"])
    assert [r["llm_latency_ms"] for r in doc["seed_reference"]] == pytest.approx([20 / 33 * 1000 + 300, 300, 450])
    cpu = doc["backends"]["local"]["session"]["cpu"]
    assert cpu["stage_cpu_s"]["llm"] > 0 and cpu["stage_cpu_s"]["tts"] > 0
    # Every thread that woke counts its context switches; the VAD wakes for each 32 ms mic block.
    assert cpu["stage_switches_per_s"]["vad"] >= 10 and "context switches / s" in md
    assert doc["resources"]["peak_rss_mb"] > 100


def test_backend_flags_select_a_remote_llm(tmp_path) -> None:
    from app.bench.cli import plan_from_args, wants_remote

    argv = ["bench", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--quick"]
    args = build_parser().parse_args([*argv, "--out", str(tmp_path)])
    config = config_from_args(args)
    assert wants_remote(args, config) and config.base_url == "http://127.0.0.1:9/v1" and config.remote_model == "m"
    assert plan_from_args(args).mode == "quick" and args.out == tmp_path
    plain = build_parser().parse_args(["bench"])
    assert not wants_remote(plain, config_from_args(plain))
    assert plan_from_args(plain).questions >= 10


def test_remote_backend_is_measured_the_same_way(engines, config, tmp_path) -> None:
    from app.engines.llm_openai import OpenAiCompatLlm
    from tests.servers.fake_openai import FakeOpenAiServer

    with FakeOpenAiServer() as server:
        remote = OpenAiCompatLlm(server.base_url, "fake-model", None)
        # No long session: its rows have their own test, and 22 more turns here took 2 of the suite's 10 minutes.
        plan = Plan(questions=1, barge_ins=0, direct_questions=1, budget_s=30.0, mode="test", long_session=0)
        doc = run_bench(engines, config, tmp_path, plan, remote_llm=remote, include_local=False, replica=False)
    assert set(doc["backends"]) == {"openai"}
    remote_result = doc["backends"]["openai"]
    assert remote_result["analysis"]["pipeline"]["ttft_ms"]["n"] == 1
    assert remote_result["direct"][0]["reply"].startswith("Hello there")
    assert "Doppel openai" in (tmp_path / "bench.md").read_text()


def test_long_session_in_other_voices_and_the_window_get_their_own_rows(engines, config, tmp_path) -> None:
    """The held-out voices (one growing conversation, replies heard to the end) and the real window."""
    plan = Plan(questions=1, barge_ins=0, direct_questions=1, budget_s=120.0, mode="test", long_session=2, gui=True)
    doc = run_bench(engines, config, tmp_path, plan)
    result = doc["backends"]["local"]
    long_turns = result["long_session"]["turns"]
    assert [t["input"] for t in long_turns] == ["h01", "h02"]
    assert all(t["playout_cut_by_bench"] is False for t in long_turns)  # every reply heard to its end
    assert result["analysis"]["long_session"]["speech_end_to_first_audio_ms"]["all"]["n"] >= 1
    window = result["gui_session"]
    assert [t["input"] for t in window["turns"]] == ["q01"] and window["window"]["paints"] > 0
    assert result["analysis"]["gui"]["window"]["speech_end_to_first_audio_ms"]["p50"] > 0
    # The headless conversation again after the window: the window's ratios are over both sessions around it.
    assert [t["input"] for t in result["session_after"]["turns"]] == ["q01"]
    assert result["analysis"]["gui"]["headless_after"]["speech_end_to_first_audio_ms"]["n"] == 1
    # The window's turn paired with the engine alone on its very prompt and tokens, its face timed and held.
    (row,) = window["same_prompts_alone"]
    assert row["turn"] == 0 and row["given_tps"] > 0 and row["given_tokens"] >= 2
    assert window["render"]["available"] and window["render"]["frames"] > 0
    paired = result["analysis"]["gui"]["same_prompts"]["pipeline_over_given"]
    assert paired["p50"] == pytest.approx(window["turns"][0]["metrics"]["tps"] / row["given_tps"])
    markdown = (tmp_path / "bench.md").read_text()
    assert "Other voices, one long session" in markdown and "The window" in markdown
    assert markdown.count("Replies that open with an earlier reply's first six words") == 2  # bench set, long session


def test_replies_copying_an_earlier_one_are_counted() -> None:
    from app.bench.report_sessions import repeated_replies

    def turn(text: str, tokens: int = 9) -> dict:
        return {"generated": text, "metrics": {"n_tokens": tokens}}

    stuck = "The best thing you can do is to take a few deep breaths."
    turns = [turn(stuck), turn("Bees make honey from nectar."), turn(stuck.upper()), turn("Say it again?", 0)]
    assert repeated_replies(turns) == (1, 3)  # the canned reply is not the model's
