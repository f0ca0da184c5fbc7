"""The like-for-like TPS baseline: the pipeline's own prompts, replayed on the engine alone."""

from __future__ import annotations

from app.bench.replay import PromptRecorder, replay
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
