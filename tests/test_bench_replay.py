"""The like-for-like TPS baseline: the pipeline's own prompts, replayed on the engine alone."""

from __future__ import annotations

from app.bench.replay import BetweenTurns, PromptRecorder, replay
from app.bench.report import same_prompts_summary, window_analysis
from app.core.engines import ChatMessage


def test_the_recorder_keeps_each_committed_turns_prompt_and_replay_measures_it(llm) -> None:
    recorder = PromptRecorder(llm)
    spoken = [ChatMessage("system", "You are brief."), ChatMessage("user", "What is the capital of France?")]
    speculation = [ChatMessage("system", "You are brief."), ChatMessage("user", "What is the")]
    for messages in (speculation, spoken):
        assert list(recorder.stream_chat(messages)), "the recorder passes the reply through"
    assert recorder.threads == llm.threads  # everything else reaches the engine unchanged
    prompts = recorder.prompts_for(["What is the capital of France?", None, "Never said"])
    assert prompts == [spoken]  # the discarded speculation and unmatched turns are not replayed
    (row,) = replay(llm, prompts)
    assert row["n_tokens"] >= 2 and row["tps"] > 0
    assert row["prompt_tokens"] == len(llm.prompt_tokens(spoken))


def test_the_replay_decodes_the_pipelines_very_tokens_and_pairs_each_turn(llm) -> None:
    recorder = PromptRecorder(llm)
    asked = [ChatMessage("system", "You are brief."), ChatMessage("user", "Name three colours.")]
    pieces = [token.text for token in recorder.stream_chat(asked)]
    ids = recorder.reply_for(recorder.prompts_for(["Name three colours."])[0])
    assert len(ids) == len(pieces) >= 2  # one id per token the pipeline saw

    other = [ChatMessage("system", "You are brief."), ChatMessage("user", "And the capital of Spain?")]
    llm.prefill(other)  # what the conversation has cached when the bench replays the turn
    kept = llm.prompt_tokens(other)
    given = llm.decode_given(asked, ids)
    assert [next(given) for _ in ids] == ids
    prompt = llm.prompt_tokens(asked)
    assert llm.cached_prefix(prompt + ids) == len(prompt) + len(ids) - 1  # those very tokens (the last one is next)
    given.close()
    assert llm.cached_prefix(kept) == len(kept)  # the conversation's cache is put back as it was

    between = BetweenTurns(recorder)
    between()  # the reply that just ended, decoded again alone
    between()  # and only once
    assert list(between.given_tps) == [0] and between.given_tps[0] > 0
    assert list(between.persona_tps) == [0] and between.persona_tps[0] > 0  # the words after the persona alone
    assert llm.cached_prefix(kept) == len(kept)  # and after both replays the conversation's cache is back

    turns = [{"metrics": {"tps": 50.0}}, {"metrics": {"tps": None}}, {"metrics": {"tps": 90.0}}]
    rows = [
        {"turn": 0, "tps": 120.0, "prompt_tokens": 200, "given_tps": 100.0},
        {"turn": 1, "tps": 110.0, "prompt_tokens": 210, "given_tps": 100.0},  # the turn has no TPS: unpaired
        {"turn": 2, "tps": 100.0, "prompt_tokens": 220, "given_tps": 100.0},
    ]
    rows[0]["persona_tps"], rows[2]["persona_tps"] = 125.0, 100.0
    same = same_prompts_summary({"turns": turns, "same_prompts_alone": rows}, 70.0)
    paired = same["pipeline_over_given"]
    assert paired["n"] == 2 and paired["p50"] == 0.7 and paired["at_least_0_9"] == 1
    assert same["persona_tps"]["p50"] == 112.5 and same["pipeline_over_persona"] == 70.0 / 112.5
    assert same["pipeline_over_persona_paired"]["n"] == 2 and same["pipeline_over_persona_paired"]["p50"] == 0.65


def test_the_window_is_divided_by_the_headless_sessions_before_and_after_it() -> None:
    """A host that slows down while the bench runs weighs on both sides of the window's ratios."""

    def session(tps: list[float], first_audio: list[float], given: float) -> dict:
        pairs = zip(tps, first_audio, strict=True)
        turns = [{"metrics": {"tps": t, "speech_end_to_first_audio_ms": a}} for t, a in pairs]
        rows = [{"turn": i, "tps": given, "prompt_tokens": 200, "given_tps": given} for i in range(len(turns))]
        return {"turns": turns, "same_prompts_alone": rows}

    before = session([100.0, 100.0], [400.0, 400.0], given=100.0)  # a fast host
    window = session([81.0, 81.0], [450.0, 450.0], given=90.0)  # slower: the host and the window
    after = session([80.0, 80.0], [500.0, 500.0], given=80.0)  # the host alone slowed down
    gui = window_analysis({"session": before, "gui_session": window, "session_after": after})
    assert gui["headless_around"]["tps"]["p50"] == 90.0 and gui["headless_after"]["tps"]["p50"] == 80.0
    assert gui["window_over_headless"]["tps"] == 0.9  # 81 over the 90 of both sessions, not over the 100 before
    assert gui["window_over_headless"]["speech_end_to_first_audio_ms"] == 1.0
    assert gui["paired_tps_over_headless"] == 0.9  # each side over the engine alone on the same work

    alone = window_analysis({"session": before, "gui_session": window})  # a bench without the second session
    assert "headless_after" not in alone and alone["window_over_headless"]["tps"] == 0.81
