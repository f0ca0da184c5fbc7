"""The whole chain without Qt: WAV speech in at real-time pace, audio out, real engines."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from app.core import events as ev
from app.core.audio_io import FileSource, SourceItem, WavWriterSink
from app.core.conversation import Conversation
from app.core.history import JsonlLog
from app.core.turn import heard_for_history
from tests.conftest import trim_silence

ORDERED_MARKS = ("asr_final_ms", "speech_end_to_first_audio_ms")


class Recorder:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind: type) -> list:
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]


def run_session(config, engines, tmp_path, items_factory: Callable, max_s: float = 90.0, face=None):
    holder: dict[str, Conversation] = {}
    recorder = Recorder()
    source = FileSource(items_factory(holder, recorder))
    sink = WavWriterSink(tmp_path / "out.wav", engines.tts.sample_rate)
    log = JsonlLog(tmp_path / "turns.jsonl")
    conversation = Conversation(config, engines, source=source, sink=sink, log=log, face=face)
    holder["c"] = conversation
    conversation.bus.subscribe(recorder)
    before = {t.name for t in threading.enumerate()}
    conversation.start()
    deadline = time.monotonic() + max_s
    while not source.finished.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.8)
    assert conversation.wait_idle(max(1.0, deadline - time.monotonic()))
    assert conversation.shutdown(timeout=2.0)
    leftover = {t.name for t in threading.enumerate() if t.is_alive()} - before
    records = [json.loads(line) for line in (tmp_path / "turns.jsonl").read_text().splitlines()]
    return conversation, recorder, records, leftover, sink


def test_two_spoken_turns_with_metrics_and_log(config, engines, speak16k, tmp_path) -> None:
    def items(holder, _rec):
        return [
            SourceItem(speak16k("What is the capital of France?")),
            SourceItem(
                speak16k("Can you tell me a fun fact about cats?"), wait_for=lambda: holder["c"].idle, delay_s=0.5
            ),
        ]

    _, rec, records, leftover, sink = run_session(config, engines, tmp_path, items)
    transcripts = [e.text.lower() for e in rec.of(ev.TranscriptFinal)]
    assert len(transcripts) == 2, transcripts
    assert "capital" in transcripts[0] and "france" in transcripts[0]
    assert "cats" in transcripts[1] and "fact" in transcripts[1]
    assert len(records) == 2
    for record in records:
        assert record["reply"] and not record["interrupted"]
        m = record["metrics"]
        for key in (
            "vad_end_of_turn_ms",
            "asr_final_ms",
            "ttft_ms",
            "tps",
            "llm_latency_ms",
            "first_chunk_to_tts_ms",
            "tts_first_audio_ms",
            "speech_end_to_first_audio_ms",
        ):
            assert m[key] is not None and m[key] > 0, (key, m)
        # The transcript may be ready before the VAD decides (speculative ASR), never after the reply plays.
        assert m["asr_final_ms"] <= m["speech_end_to_first_audio_ms"]
        assert m["vad_end_of_turn_ms"] <= m["speech_end_to_first_audio_ms"]
        assert m["llm_latency_ms"] == pytest.approx(20 / m["tps"] * 1000 + m["ttft_ms"])
    assert not leftover, f"threads left running: {leftover}"
    assert np.sqrt(np.mean(sink.recorded() ** 2)) > 0.005  # the replies were really played
    assert [e.turn_id for e in rec.of(ev.TurnEnded)] == [r["turn_id"] for r in records]


def test_barge_in_stops_reply_and_keeps_only_what_was_heard(config, engines, speak16k, tmp_path) -> None:
    def items(holder, rec):
        def replica_has_spoken_a_while() -> bool:
            played = rec.of(ev.AudioPlayed)
            return bool(played) and time.perf_counter_ns() - played[0].t_ns > 0.5e9  # replies can be short

        return [
            SourceItem(speak16k("Tell me a long story about a brave knight and a dragon.")),
            SourceItem(speak16k("Sorry but what time is it right now"), wait_for=replica_has_spoken_a_while),
        ]

    conversation, rec, records, leftover, _ = run_session(config, engines, tmp_path, items)
    interrupted = [r for r in records if r["interrupted"]]
    assert len(interrupted) == 1, records
    first = interrupted[0]
    assert first["cancel_reason"] == "barge-in"
    assert len(first["reply"]) < len(first["generated"])
    barge = rec.of(ev.BargeIn)
    assert barge and barge[0].silent_ns >= barge[0].onset_ns
    assert first["metrics"]["barge_in_ms"] is not None
    assert conversation.history.history_tokens == config.history_tokens  # the budget reaches the conversation
    history = conversation.history.snapshot()
    told = heard_for_history(first["reply"])  # what was heard, in whole sentences
    if told:
        assert history[1].content == first["user"] and history[2].content == told
        assert first["reply"].startswith(told)
    else:  # only a fragment was heard: the model does not see the exchange
        assert all(m.content != first["user"] for m in history)
    assert not leftover


def test_resumed_pause_is_one_turn_and_speculation_is_discarded(config, engines, speak16k, tmp_path) -> None:
    gap = np.zeros(int(0.15 * 16000), dtype=np.float32)  # shorter than the 250 ms window
    audio = np.concatenate(
        [trim_silence(speak16k("I would like to know")), gap, trim_silence(speak16k("the capital of Germany."))]
    )

    conversation, rec, records, leftover, _ = run_session(config, engines, tmp_path, lambda h, r: [SourceItem(audio)])
    transcripts = [e.text.lower() for e in rec.of(ev.TranscriptFinal)]
    assert len(transcripts) == 1, transcripts
    assert "know" in transcripts[0] and "germany" in transcripts[0]
    assert conversation.speculations["discarded"] >= 1
    assert len(records) == 1
    assert not leftover


def test_reply_started_in_a_pause_is_never_heard_when_the_user_resumes(config, engines, speak16k, tmp_path) -> None:
    """A long pause inside the window: the held reply is made, then dropped unseen and unheard."""
    from dataclasses import replace

    gap = np.zeros(int(1.8 * 16000), dtype=np.float32)  # speculative ASR and LLM run in here
    audio = np.concatenate(
        [trim_silence(speak16k("What is the capital of Spain?")), gap, trim_silence(speak16k("No, of Italy."))]
    )
    slow_turns = replace(config, silence_ms=2600)
    conversation, rec, records, leftover, _ = run_session(
        slow_turns, engines, tmp_path, lambda h, r: [SourceItem(audio)]
    )
    assert conversation.speculations["discarded_replies"] >= 1, conversation.speculations
    transcripts = [e.text.lower() for e in rec.of(ev.TranscriptFinal)]
    assert len(transcripts) == 1 and "italy" in transcripts[0], transcripts
    assert len(rec.of(ev.LlmRequest)) == 1  # the dropped reply published nothing
    assert len(rec.of(ev.AudioPlayed)) == 1
    assert len(records) == 1 and "italy" in records[0]["user"].lower()
    history = conversation.history.snapshot()
    assert [m.role for m in history[1:]] == ["user", "assistant"] and "italy" in history[1].content.lower()
    assert not leftover


def test_typed_message_streams_reply_without_devices(config, engines, tmp_path) -> None:
    conversation = Conversation(config, engines, log=JsonlLog(tmp_path / "t.jsonl"))
    rec = Recorder()
    conversation.bus.subscribe(rec)
    conversation.start()
    conversation.say("Say hello in one short sentence.")
    assert conversation.wait_idle(60)
    assert conversation.shutdown()
    assert len(rec.of(ev.LlmToken)) >= 2
    assert rec.of(ev.ReplyText)[0].text
    assert json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])["metrics"]["ttft_ms"] > 0


def test_a_turn_overtaken_by_the_next_utterance_is_logged_and_its_words_carried(config, engines, speak16k, tmp_path):
    """The user pauses just past the window and goes on: nothing said is lost, and one reply answers both."""
    first = trim_silence(speak16k("I have been feeling tired lately and I wonder about simple habits."))
    gap = np.zeros(int(0.34 * 16000), dtype=np.float32)  # ends the turn; the ASR (started only then) is still busy
    audio = np.concatenate([first, gap, trim_silence(speak16k("What helps me sleep at night?"))])

    def items(_holder, _rec):
        return [SourceItem(audio)]

    holder: dict = {}
    recorder = Recorder()
    source = FileSource(items(holder, recorder))
    log = JsonlLog(tmp_path / "turns.jsonl")
    conversation = Conversation(config, engines, source=source, log=log, speculate=False)
    conversation.bus.subscribe(recorder)
    conversation.start()
    deadline = time.monotonic() + 60
    while not source.finished.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.8)
    assert conversation.wait_idle(40)
    assert conversation.shutdown(timeout=2.0)
    records = [json.loads(line) for line in (tmp_path / "turns.jsonl").read_text().splitlines()]
    transcripts = [e.text.lower() for e in recorder.of(ev.TranscriptFinal)]
    assert len(records) == len(transcripts) >= 1  # every utterance heard is in the log
    assert "tired" in " ".join(r["user"].lower() for r in records) and "sleep" in records[-1]["user"].lower()
    overtaken = [r for r in records if r["cancel_reason"].startswith("overtaken")]
    for r in overtaken:  # not answered, but its words are in the next prompt
        assert not r["reply"] and "tired" in records[-1]["user"].lower()
    assert records[-1]["reply"] and len(recorder.of(ev.LlmRequest)) == len(records) - len(overtaken)
