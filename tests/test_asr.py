"""Both speech recognisers with their bundled models: words, bounds, fillers, no state between turns."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from app.bench.asr import KEY_WORDS, understood
from app.bench.questions import QUESTIONS, ensure_audio, load_audio
from app.core.fillers import judge
from app.core.listener import Listener
from app.core.vad import FRAME_SAMPLES, TurnDetectorSettings
from app.engines.asr_moonshine import MAX_TOKENS_PER_SECOND, MIN_TOKENS, pieces
from app.engines.asr_whisper import FALLBACK_BUDGET_MS, cut_loop
from tests.helpers import word_error_rate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def questions() -> dict[str, np.ndarray]:
    paths = ensure_audio(list(QUESTIONS), ROOT / "docs" / "bench" / "questions")
    return {qid: load_audio(path) for qid, path in paths.items()}


def test_moonshine_hears_the_bench_questions(moonshine_asr, questions) -> None:
    heard = {qid: moonshine_asr.transcribe(audio) for qid, audio in questions.items()}
    texts = {qid: t.text.lower() for qid, t in heard.items()}
    missing = {qid: texts[qid] for qid in KEY_WORDS if not understood(qid, texts[qid])}
    # Measured: "Why is this Kyblue?", "...language and a cult?", "occupuses" (docs/asr.md): why it is
    # not the default. Whisper tiny.en misses none of these twelve.
    assert len(missing) <= 3, missing
    refs = {q.id: q.text for q in QUESTIONS}
    words = sum(len(refs[q].split()) for q in heard)
    wer = sum(word_error_rate(refs[q], t.text) * len(refs[q].split()) for q, t in heard.items()) / words
    assert wer <= 0.15, (wer, texts)
    assert all(judge(t.text, t.doubtful).is_turn for t in heard.values()), texts
    for qid, t in heard.items():  # cost follows the audio (no padding to a window)
        assert t.engine == "moonshine" and t.compute_ms > 0 and t.audio_s == pytest.approx(len(questions[qid]) / 16000)


def test_moonshine_cost_grows_with_the_audio(moonshine_asr, questions) -> None:
    def best_ms(audio: np.ndarray) -> float:
        return min(moonshine_asr.transcribe(audio).compute_ms for _ in range(3))

    short, long = best_ms(questions["q03"]), best_ms(questions["q11"])  # 0.8 s vs 5.0 s of speech
    assert long > 1.5 * short, (short, long)


def test_the_decode_is_bounded_by_the_audio_length(moonshine_asr, questions) -> None:
    audio = questions["q11"]
    for cut_s in (0.4, 1.0, 2.0):
        decoded = moonshine_asr.decode(audio[: int(cut_s * 16000)])
        assert decoded.tokens <= max(MIN_TOKENS, int(np.ceil(MAX_TOKENS_PER_SECOND * cut_s)))
    assert pieces(np.zeros(16000 * 29, np.float32))[-1][1] == 16000 * 29
    assert all(end - start <= 16 * 16000 for start, end in pieces(np.zeros(16000 * 29, np.float32)))


def test_a_loop_is_cut_where_it_starts_repeating() -> None:
    assert cut_loop("What is the capital of France? What is the capital of France") == "What is the capital of France?"
    assert cut_loop("Hi. Hi. Hi. Hi.") == "Hi."
    assert cut_loop("Tell me about cats.") == "Tell me about cats."


@pytest.mark.parametrize("engine", ["moonshine", "whisper"])
def test_short_and_unclear_input_never_blocks_beyond_its_bound(engine, request, speak16k) -> None:
    """Whisper's old fallback (the 30 s decode) took 0.6-2.3 s on these; now one bounded retry at most."""
    asr = request.getfixturevalue(f"{engine}_asr")
    rng = np.random.default_rng(7)
    inputs = {
        "mm-hmm": speak16k("Mm-hmm."),
        "uh-huh": speak16k("Uh-huh."),
        "hiss": (0.01 * rng.standard_normal(16000)).astype(np.float32),
        "cough": (0.3 * rng.standard_normal(4800) * np.exp(-np.linspace(0, 6, 4800))).astype(np.float32),
    }
    bound_ms = 200.0 if engine == "moonshine" else FALLBACK_BUDGET_MS
    for name, audio in inputs.items():
        started = time.perf_counter()
        t = asr.transcribe(audio)
        wall_ms = (time.perf_counter() - started) * 1000
        # 1.5x: the bound is checked before the retry starts; a loaded 2-core machine stretches both.
        assert wall_ms <= 1.5 * bound_ms, (name, wall_ms, t.text)
        assert len(t.text.split()) <= 3, (name, t.text)


@pytest.mark.parametrize("engine", ["moonshine", "whisper"])
def test_no_state_carries_from_turn_to_turn(engine, request, questions) -> None:
    """The same audio first, and again after 20 other turns, gives the same text."""
    asr = request.getfixturevalue(f"{engine}_asr")
    first = asr.transcribe(questions["q05"]).text
    others = [q for q in questions if q != "q05"]
    for i in range(20):
        asr.transcribe(questions[others[i % len(others)]])
    assert asr.transcribe(questions["q05"]).text == first


def _utterances(listener_audio: list[tuple[np.ndarray, int]]) -> list[np.ndarray]:
    """Play each (audio, silence before it) through the real VAD listener; the audio it hands over."""
    ended: list[np.ndarray] = []
    listener = Listener(
        TurnDetectorSettings(), lambda _t: None, lambda _u: None, lambda: None, lambda u: ended.append(u.audio)
    )
    stream = np.concatenate(
        [np.concatenate([np.zeros(gap, np.float32), a]) for a, gap in listener_audio] + [np.zeros(16000, np.float32)]
    )
    for i in range(0, len(stream) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        listener.push(stream[i : i + FRAME_SAMPLES], i * 62_500)
    return ended


@pytest.mark.parametrize("engine", ["moonshine", "whisper"])
def test_a_question_is_heard_alike_wherever_its_turn_began(engine, request, questions) -> None:
    """Through the VAD: the same recording at four frame phases (what differs from turn to turn) gives one text.

    Before the front end cut the voice with fixed margins, Moonshine changed its words on 8 of 12
    questions across such repeats, Whisper on 4.
    """
    asr = request.getfixturevalue(f"{engine}_asr")
    for qid in ("q05", "q07", "q09"):
        utterances = _utterances([(questions[qid], 9600 + shift) for shift in (0, 131, 257, 389)])
        assert len(utterances) == 4
        texts = {asr.transcribe(u).text for u in utterances}
        assert len(texts) == 1, (qid, texts)


def test_a_draft_from_the_growing_utterance_gives_the_full_decode(moonshine_asr, questions) -> None:
    """Decode every 0.4 s while the question is spoken, each seeding the next; the final is the full decode.

    The draft is checked in one batched decoder pass. Moonshine's int8 layers quantize activations
    per tensor, so a batch rounds differently from one token at a time: where the model is torn
    between two words (top two logits within 0.5: "should"/"shall", "guy"/"sky") either may win.
    Anywhere else the final must be the full decode's, and most of it must come from the draft.
    """
    from app.engines.asr_trim import normalised

    identical, accepted, total = 0, 0, 0
    for qid, speech in questions.items():
        audio = np.concatenate([np.zeros(4000, np.float32), speech, np.zeros(1024, np.float32)])
        draft: tuple[int, ...] = ()
        for end in range(4000 + 6400, len(audio), 6400):
            draft = moonshine_asr.transcribe(audio[:end], draft=draft).draft
        full = moonshine_asr.decode(normalised(audio))
        final = moonshine_asr.decode(normalised(audio), draft=draft)
        accepted, total = accepted + final.accepted, total + final.tokens
        if final.ids == full.ids:
            identical += 1
            continue
        first = next(i for i, (a, b) in enumerate(zip(final.ids, full.ids, strict=False)) if a != b)
        assert full.margins[first] < 0.5, (qid, final.text, full.text, full.margins[first])
    assert identical >= 10, identical
    assert accepted >= 0.7 * total, (accepted, total)
