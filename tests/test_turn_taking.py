"""Turn-taking through the real pipeline: hesitations held whole, backchannels ride through, interruptions stop.

Speech is the real Piper voice, through the real VAD, recogniser, LLM (its
end-of-turn probability included) and TTS; the speaker is a paced WAV writer.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from app.core import events as ev
from app.core.audio_io import PlayTag, SourceItem
from app.core.fillers import is_backchannel
from app.core.turn_model import SENTENCE_PAUSE_MS, UNSURE_LAST_WORD_P, TurnModel, text_says_unfinished
from app.replica.replica import Replica
from tests.conftest import trim_silence
from tests.test_conversation import run_session

LEAD = "Tell me about the history of the bicycle, please."


@pytest.mark.parametrize(
    ("text", "unfinished"),
    [
        ("What time is it?", False),
        ("How are you", False),
        ("What are you talking about?", False),
        ("So I was thinking about", True),
        ("Could you tell me, um,", True),
        ("What's the best way to?", True),  # a "?" after a dangling "to" does not end it
        ("If I wanted to learn the guitar.", True),  # a subordinate clause alone
        ("Since the train was late, can I work from home?", False),
        ("I need a present for my dad and...", True),
        ("", False),
    ],
)
def test_text_cue(text: str, unfinished: bool) -> None:
    assert text_says_unfinished(text) is unfinished


@pytest.mark.parametrize(
    ("text", "doubtful", "backchannel"),
    [
        ("Mm-hmm.", False, True),
        ("Yeah.", False, True),
        ("Okay, right.", False, True),
        ("Ha ha.", False, True),
        ("(coughs)", False, True),
        ("Amen.", True, True),  # a decode the recogniser doubts is a sound, not a request
        ("Wait, stop.", False, False),
        ("No.", False, False),
        ("Yeah, but what about trains?", False, False),
        ("Really?", False, False),
        ("NEMMA", False, True),  # a lone unknown word: a hum the recogniser spelled oddly
        ("Stop.", False, False),
    ],
)
def test_backchannel_words(text: str, doubtful: bool, backchannel: bool) -> None:
    assert is_backchannel(text, doubtful) is backchannel


def test_turn_model_combines_cues() -> None:
    model = TurnModel("text+llm", llm_threshold=0.8)
    held = model.judge("So I was thinking about", None)
    assert not held.complete and held.text_unfinished and model.wait_ms(held) == model.window.max_silence_ms
    done = model.judge("What time is it?", None)
    assert done.complete and model.wait_ms(done) == model.window.min_silence_ms
    assert not model.with_llm(done, 0.3).complete  # the LLM expects more words
    assert model.with_llm(done, 0.95).complete
    window = model.window
    sure, unsure = model.with_llm(done, 0.0), model.with_llm(done, 0.7)
    assert model.wait_ms(sure) == window.max_silence_ms  # the LLM is sure more is coming
    assert SENTENCE_PAUSE_MS <= model.wait_ms(unsure) < model.wait_ms(model.with_llm(done, 0.3)) < window.max_silence_ms
    assert TurnModel("off").judge("So I was thinking about", None).complete
    question, statement = model.judge("Where do penguins live?", None), model.judge("I like tea.", None)
    assert not model.asks_llm(question, "Where do penguins live?")  # the recogniser heard a question end
    assert model.asks_llm(statement, "I like tea.") and not model.asks_llm(held, "So I was thinking about")
    assert not TurnModel("text").asks_llm(statement, "I like tea.")


def test_words_the_recogniser_doubts_hold_the_turn_only_the_sentence_pause() -> None:
    """A doubted line gets "say it again": its made-up "..." or odd statement must not hold it 1.5 s."""
    model = TurnModel("text+llm")
    trailing = "Oh many, many, just have a really lovely..."  # for "How many minutes are there in a day?"
    assert model.wait_ms(model.judge(trailing, None)) == model.window.max_silence_ms  # words trusted: the long wait
    doubted = model.judge(trailing, None, doubtful=True)
    assert not doubted.complete and doubted.doubted and model.wait_ms(doubted) == SENTENCE_PAUSE_MS
    odd = "Working as simple way to start learning."
    assert model.asks_llm(model.judge(odd, None), odd)
    doubted_odd = model.judge(odd, None, doubtful=True)
    assert doubted_odd.complete and not model.asks_llm(doubted_odd, odd)  # the LLM would read made-up words
    assert TurnModel("off").judge(trailing, None, doubtful=True).complete


@pytest.mark.parametrize(
    ("text", "goes_on"),
    [
        ("Do you think that?", True),  # "...that | it will rain tomorrow?"
        ("Did you know that?", True),  # a whole question too: it only waits the sentence pause
        ("Is that so?", False),
        ("What is that?", False),
        ("Why is that?", False),
    ],
)
def test_an_ending_that_may_go_on_waits_the_sentence_pause(text: str, goes_on: bool) -> None:
    model = TurnModel("text+llm")
    judged = model.with_llm(model.judge(text, None), 0.97)  # the LLM calls it complete
    assert judged.complete is not goes_on
    assert model.wait_ms(judged) == (SENTENCE_PAUSE_MS if goes_on else model.window.min_silence_ms)
    if goes_on:
        assert model.wait_ms(model.judge(text, None)) == SENTENCE_PAUSE_MS  # a remote LLM gives no P(end)
        assert not judged.text_unfinished and judged.text_may_go_on
    with pytest.raises(ValueError, match="Smart Turn"):
        TurnModel("text+audio")


@pytest.mark.parametrize(
    ("text", "last_word_p", "held"),
    [
        ("When you make tea, do you port?", 0.33, True),  # "...do you put | the milk in first?"
        ("When you make tea, do you port?", 0.95, False),
        ("When you make tea, do you port?", None, False),  # an engine that does not score words
        ("I'd like some advice on growing tomatoes.", 0.2, False),  # no "?": the LLM reads statements
    ],
)
def test_a_question_whose_last_word_the_recogniser_doubts_waits_the_sentence_pause(
    text: str, last_word_p: float | None, held: bool
) -> None:
    model = TurnModel("text+llm")
    judged = model.judge(text, None, last_word_p)
    assert judged.complete is not held
    assert judged.unsure_ending is held
    if held:
        assert not model.asks_llm(judged, text)
        assert model.wait_ms(judged) == SENTENCE_PAUSE_MS
    assert TurnModel("off").judge(text, None, last_word_p).complete  # the fixed window ignores every cue


def test_the_recogniser_scores_a_questions_last_word(asr, speak16k) -> None:
    heard = asr.transcribe(speak16k("How long should I boil an egg?"))
    assert heard.text.endswith("?")
    assert heard.last_word_p is not None and UNSURE_LAST_WORD_P < heard.last_word_p <= 1.0
    assert asr.transcribe(speak16k("I like tea with milk.")).last_word_p is None  # only after a "?"


def test_a_hesitation_is_held_and_answered_once_whole(config, engines, speak16k, tmp_path) -> None:
    """ "So I was thinking about ... (0.8 s) ... a trip to Spain. Where should I go?" is one turn, one reply."""
    gap = np.zeros(int(0.8 * 16000), dtype=np.float32)  # past the 250 ms window, inside the 1.5 s one
    audio = np.concatenate(
        [
            trim_silence(speak16k("So I was thinking about")),
            gap,
            trim_silence(speak16k("a trip to Spain. Where should I go?")),
        ]
    )
    conversation, rec, records, leftover, _ = run_session(config, engines, tmp_path, lambda h, r: [SourceItem(audio)])
    judged = rec.of(ev.TurnJudged)
    assert judged and not judged[0].complete, [(j.complete, j.reason) for j in judged]
    answered = [e for e in rec.of(ev.TranscriptFinal) if not e.not_a_turn]
    assert len(answered) == 1 and len(rec.of(ev.AudioPlayed)) == 1, [e.text for e in rec.of(ev.TranscriptFinal)]
    assert rec.of(ev.FragmentMerged) and conversation.merged_fragments == 1
    assert len(records) == 1 and not records[0]["interrupted"]
    user = records[0]["user"].lower()
    assert "thinking" in user and "spain" in user, user  # the fragment's words are in the one turn's prompt
    assert len(rec.of(ev.LlmRequest)) == 1  # the fragment's held reply was never published
    assert not leftover


def lead_then(speak16k, said: str):
    """Items for ``run_session``: the lead question, then ``said`` once its reply was heard for 0.8 s."""

    def items(_holder, rec):
        def heard_a_while() -> bool:
            played = rec.of(ev.AudioPlayed)
            return bool(played) and time.perf_counter_ns() - played[0].t_ns > 0.8e9

        return [SourceItem(speak16k(LEAD)), SourceItem(trim_silence(speak16k(said)), wait_for=heard_a_while)]

    return items


class RecordingFace:
    """The real replica, with the timing of every push recorded (the lips follow these)."""

    def __init__(self) -> None:
        self.face = Replica.from_assets()
        self.fps, self.idle_fps = self.face.fps, self.face.idle_fps
        self.pushes: list[tuple[int, int, int]] = []  # (samples, sample rate, start_ns)
        self.clears: list[int] = []

    def push_audio(self, chunk, start_ns: int) -> None:
        self.pushes.append((len(chunk.audio), chunk.sample_rate, start_ns))
        self.face.push_audio(chunk, start_ns)

    def clear_buffer(self) -> None:
        self.clears.append(time.perf_counter_ns())
        self.face.clear_buffer()

    def render(self, t_ns: int):
        return self.face.render(t_ns)

    def next_speech_ns(self, t_ns: int):
        return self.face.next_speech_ns(t_ns)


def test_a_backchannel_pauses_the_reply_which_resumes_at_the_same_sample(config, engines, speak16k, tmp_path) -> None:
    face = RecordingFace()

    items = lead_then(speak16k, "Mm-hmm.")

    conversation, rec, records, leftover, sink = run_session(config, engines, tmp_path, items, face=face)
    paused, resumed = rec.of(ev.ReplyPaused), rec.of(ev.ReplyResumed)
    assert paused and resumed and not rec.of(ev.BargeIn), [e.text for e in rec.of(ev.TranscriptFinal)]
    assert paused[0].turn_id == resumed[0].turn_id == records[0]["turn_id"]
    assert paused[0].silent_ns < rec.of(ev.TranscriptFinal)[1].t_ns  # silent at the voice, before any transcript
    assert len(records) == 1 and not records[0]["interrupted"]  # no turn for the "mm-hmm", the reply was not cut
    heard, generated = records[0]["reply"].split(), records[0]["generated"].split()
    assert heard == generated  # every word was heard (line breaks aside): it went on where it stopped
    finals = rec.of(ev.TranscriptFinal)
    assert len(finals) == 2 and finals[1].not_a_turn, [(e.text, e.not_a_turn) for e in finals]
    assert len(rec.of(ev.LlmRequest)) == 1
    # Lips: cleared at the pause, then given exactly the rest of the audio, starting when it resumed.
    assert face.clears
    cleared_at = face.clears[-1]
    after = [(n, rate, at) for n, rate, at in face.pushes if at >= cleared_at]
    assert after, face.pushes
    resumed_at = resumed[0].t_ns
    # Never before the audio resumes: at the resume when the paused sentence had audio left, or
    # when the next sentence plays if the pause fell between sentences (it was not made yet).
    assert after[0][2] >= resumed_at - 100e6, (after[0][2] - resumed_at) / 1e6
    turn_id = records[0]["turn_id"]
    total = sum(n for n, _r, _a in face.pushes if True)
    assert total >= sum(n for n, _r, _a in after)
    mid = after[0][2] + int(0.5 * after[0][0] / after[0][1] * 1e9)
    assert face.face.render(mid).speaking  # the face speaks when the resumed audio is heard
    assert sink.played_samples(PlayTag(turn_id, 0)) > 0
    assert conversation.backchannels == 1
    assert not leftover


def test_a_real_interruption_stops_the_reply(config, engines, speak16k, tmp_path) -> None:
    items = lead_then(speak16k, "Wait, stop. What year was that?")

    _conversation, rec, records, leftover, _ = run_session(config, engines, tmp_path, items)
    barge = rec.of(ev.BargeIn)
    assert barge and rec.of(ev.ReplyPaused) and not rec.of(ev.ReplyResumed)
    # Silent at the voice's onset (the bench times it), long before the transcript that decides.
    assert barge[0].silent_ns < rec.of(ev.TranscriptFinal)[1].t_ns
    interrupted = [r for r in records if r["interrupted"]]
    assert len(interrupted) == 1 and interrupted[0]["cancel_reason"] == "barge-in"
    # "Wait," may end a turn of its own at its pause; the rest then overtakes it, is answered with its
    # words carried in, and the fragment is logged with no reply (nothing lost, nothing said twice).
    fragments = [r for r in records[1:-1] if (r.get("cancel_reason") or "").startswith("overtaken")]
    assert all(not r["reply"] for r in fragments) and len(records) == 2 + len(fragments), records
    assert "year" in records[-1]["user"].lower() and records[-1]["reply"]
    assert not leftover


def test_turn_bench_summary_counts_each_kind() -> None:
    from app.bench.turns import ARMS, CaseResult, summarize, to_markdown

    fixed, model = list(ARMS)
    results = [
        CaseResult("h1", "hesitation", fixed, eos_to_audio_ms=500, whole=False),
        CaseResult("h1", "hesitation", model, eos_to_audio_ms=600, whole=True),
        CaseResult("b1", "backchannel", fixed, reply_stopped=True),
        CaseResult("b1", "backchannel", model, eos_to_audio_ms=150, reply_stopped=False, paused_ms=400),
        CaseResult("i1", "interruption", model, eos_to_audio_ms=900, stop_ms=120),
        CaseResult("c1", "complete", model, eos_to_audio_ms=480, commit_ms=262),
    ]
    rows = {row["arm"]: row for row in summarize(results)}
    assert rows[fixed]["hesitations kept whole"] == "0/1" and rows[model]["hesitations kept whole"] == "1/1"
    assert rows[fixed]["backchannels that stopped the reply"] == "1/1"
    assert rows[model]["backchannels that stopped the reply"] == "0/1"
    assert rows[model]["interruption stop p50/p90 ms"] == "120/120"
    assert "| hesitations kept whole | 0/1 | 1/1 |" in to_markdown({"rows": list(rows.values())})


def test_a_looped_decode_still_scores_the_questions_last_word(asr, speak16k) -> None:
    """The 5 s window loops on this question; the retry that fixes it is skipped when time runs short."""
    from app.engines.asr_whisper import cut_loop, looks_looped

    audio = speak16k("How long should I boil an egg?")
    text, _logprob, last_word_p = asr._decode_short(audio, len(audio) / 16000, 5.0)
    assert looks_looped(text) and cut_loop(text).endswith("?"), text  # the case this guards
    assert last_word_p is not None and UNSURE_LAST_WORD_P < last_word_p <= 1.0
