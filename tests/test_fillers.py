"""What is a turn: the pure rule, and a filler through the real pipeline getting no reply."""

from __future__ import annotations

import pytest

from app.core import events as ev
from app.core.audio_io import SourceItem
from app.core.fillers import ASK_AGAIN, judge
from tests.conftest import trim_silence
from tests.test_conversation import run_session


@pytest.mark.parametrize(
    ("text", "doubtful", "is_turn", "reason"),
    [
        ("Mm-hmm.", False, False, "only filler"),
        ("Um, uh...", False, False, "only filler"),
        ("Mm-m-m-m", False, False, "only filler"),
        ("", False, False, "no words"),
        ("[Music]", False, False, "no words"),
        ("I'll see you in the next video.", True, False, "doubts"),  # no speech length given: noise
        ("Yeah.", False, True, ""),
        ("No.", False, True, ""),
        ("Hmm, why is the sky blue?", False, True, ""),
    ],
)
def test_judge(text: str, doubtful: bool, is_turn: bool, reason: str) -> None:
    verdict = judge(text, doubtful)
    assert verdict.is_turn is is_turn and reason in verdict.reason


def test_a_doubted_sentence_is_asked_again_and_a_doubted_scrap_is_not() -> None:
    sentence = judge("Why do cats do?", doubtful=True, audio_s=1.7)
    assert sentence.is_turn and sentence.fixed_reply == ASK_AGAIN and "asked again" in sentence.reason
    scrap = judge("Thank you.", doubtful=True, audio_s=1.7)  # two words: a hiss Whisper put words to
    assert not scrap.is_turn and not scrap.fixed_reply
    assert not judge("Why do cats do?", doubtful=True, audio_s=0.6).is_turn  # too short to be a sentence


def test_a_question_the_recogniser_doubts_is_asked_again_without_the_llm(config, engines, tmp_path) -> None:
    """espeak's "Why do cats purr?" in this voice is heard as a doubted "Why do cats do?" (mean log-p -1.03)."""
    from app.bench.questions import ensure_audio, load_audio
    from app.bench.turn_set import clips

    clip = next(q for q in clips() if q.id == "tc09")
    audio = load_audio(ensure_audio([clip], tmp_path / "clips")[clip.id])

    _, rec, records, leftover, _sink = run_session(config, engines, tmp_path, lambda _h, _r: [SourceItem(audio)])
    finals = rec.of(ev.TranscriptFinal)
    assert len(finals) == 1 and not finals[0].not_a_turn, [(e.text, e.not_a_turn) for e in finals]
    assert rec.of(ev.AudioPlayed), "the user heard nothing back"
    assert not rec.of(ev.LlmToken)  # the LLM was not asked to answer words nobody said
    assert len(records) == 1 and records[0]["reply"] == ASK_AGAIN
    assert not leftover


def test_a_filler_gets_no_reply_and_the_next_question_does(config, engines, speak16k, tmp_path) -> None:
    def items(holder, _rec):
        return [
            SourceItem(trim_silence(speak16k("Um."))),
            SourceItem(
                trim_silence(speak16k("What is the capital of France?")),
                wait_for=lambda: holder["c"].idle,
                delay_s=1.0,
            ),
        ]

    _, rec, records, leftover, _sink = run_session(config, engines, tmp_path, items)
    finals = rec.of(ev.TranscriptFinal)
    assert len(finals) == 2, [(e.text, e.not_a_turn) for e in finals]
    assert "filler" in finals[0].not_a_turn, (finals[0].text, finals[0].not_a_turn)
    assert not finals[1].not_a_turn and "france" in finals[1].text.lower()
    assert len(rec.of(ev.LlmRequest)) == 1  # only the question reached the LLM
    assert len(records) == 1 and "france" in records[0]["user"].lower() and records[0]["reply"]
    assert not leftover
