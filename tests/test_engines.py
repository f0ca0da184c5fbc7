"""The three real engines with the bundled models: no mocks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.core.audio import rms
from app.core.cancel import CancelToken
from app.core.engines import ChatMessage
from tests.helpers import word_error_rate

SENTENCE = "The weather is lovely today, so we will walk to the park after lunch."


def test_asr_transcribes_piper_speech(asr, speak16k) -> None:
    audio = speak16k(SENTENCE)
    transcript = asr.transcribe(audio)
    assert word_error_rate(SENTENCE, transcript.text) <= 0.1, transcript.text
    assert transcript.audio_s > 2.0
    assert transcript.compute_ms > 0
    assert transcript.segments and transcript.segments[0].text == transcript.text


def test_asr_long_audio_uses_full_decoder(whisper_asr, speak16k) -> None:
    text = "One two three four five six seven eight nine ten. " * 3
    audio = np.concatenate([speak16k(text), np.zeros(16000 * 18, dtype=np.float32), speak16k(SENTENCE)])
    before = set(threading.enumerate())
    transcript = whisper_asr.transcribe(audio)
    assert transcript.audio_s > 25
    assert "park" in transcript.text.lower()
    assert len(transcript.segments) >= 2
    assert not set(threading.enumerate()) - before  # no thread (tqdm's monitor) outlives the decode


def test_asr_silence_gives_empty_or_short_text(asr) -> None:
    transcript = asr.transcribe(np.zeros(16000, dtype=np.float32))
    assert len(transcript.text.split()) <= 2


def _greeting() -> list[ChatMessage]:
    return [
        ChatMessage("system", "You are Joe, a friendly person. Answer in two or three sentences."),
        ChatMessage("user", "Hello! Tell me a little about yourself and what you like to do."),
    ]


def test_llm_streams_tokens_and_reuses_prefix(llm) -> None:
    messages = _greeting()
    first = [t.text for t in llm.stream_chat(messages)]
    stats1 = llm.last_stats
    assert len(first) >= 10
    messages += [ChatMessage("assistant", "".join(first)), ChatMessage("user", "What is your favourite food?")]
    second = [t.text for t in llm.stream_chat(messages)]
    stats2 = llm.last_stats
    assert second
    assert stats2.prompt_tokens > stats1.prompt_tokens
    assert stats2.evaluated_tokens < stats1.evaluated_tokens  # the shared prefix came from the KV cache
    assert stats2.evaluated_tokens < stats2.prompt_tokens - stats1.prompt_tokens + 5


def test_llm_cancel_stops_within_two_tokens(llm) -> None:
    cancel = CancelToken()
    received = 0
    for _ in llm.stream_chat(_greeting(), cancel):
        received += 1
        if received == 5:
            cancel.cancel("test")
    assert 5 <= received <= 7
    assert llm.last_stats.finish_reason == "cancelled"


def test_llm_prefill_makes_generation_hit_the_cache(llm) -> None:
    messages = [*_greeting()[:1], ChatMessage("user", "Name three colours of the rainbow.")]
    evaluated = llm.prefill(messages)
    assert evaluated > 0
    tokens = list(llm.stream_chat(messages))
    assert tokens
    assert llm.last_stats.evaluated_tokens == 0  # the prefill left the last logits: the first token is sampled at once


def test_tts_twenty_words(tts) -> None:
    text = (
        "This sentence has exactly twenty words so that we can check how long the synthesized speech "
        "lasts in total here."
    )
    assert len(text.split()) == 20
    chunks = list(tts.synthesize(text))
    audio = np.concatenate([c.audio for c in chunks])
    duration = len(audio) / tts.sample_rate
    assert 3.0 <= duration <= 10.0
    assert rms(audio) > 0.01
    assert audio.dtype == np.float32
    assert chunks[0].phonemes, "Piper with [alignment] gives per-phoneme timing"
    assert sum(p.length for p in chunks[0].phonemes) == len(chunks[0].audio)


def test_tts_cancel_stops_chunk_production(tts) -> None:
    text = "First sentence here. Second sentence here. Third sentence here. Fourth sentence here."
    cancel = CancelToken()
    produced = 0
    for _ in tts.synthesize(text, cancel):
        produced += 1
        cancel.cancel("test")
    assert produced == 1
    chunks = list(tts.synthesize(text))  # every sentence, each in one piece or more (a streamed voice)
    assert len(chunks) >= 4 and sum(c.duration_s for c in chunks) > 3 * chunks[0].duration_s


def test_a_cancel_stops_the_sentence_being_vocoded(tts) -> None:
    """Barge-in: the cancelled reply's sentence stops inside ONNX Runtime, not after a second of vocoding."""
    session = tts._voice.session
    real_session = session._session
    cancel = CancelToken()

    class CancelOnceRunning:
        def __getattr__(self, name):
            return getattr(real_session, name)

        def run(self, *args):
            threading.Timer(0.01, cancel.cancel, ("barge-in",)).start()
            return real_session.run(*args)

    long_sentence = " ".join(["and the pistons move up and down inside the cylinders of the engine"] * 6)
    stopped_before = session.stopped_runs
    session._session = CancelOnceRunning()
    try:
        produced = list(tts.synthesize(long_sentence, cancel))
    finally:
        session._session = real_session
    assert produced == []
    assert session.stopped_runs == stopped_before + 1
    assert list(tts.synthesize("The engine still speaks."))  # the session works after a stop


def test_the_end_of_turn_cue_leaves_the_reply_nothing_to_evaluate(llm) -> None:
    """The cue's batch also evaluates the reply's header: the same probability, the same reply, no second batch."""
    import llama_cpp
    import numpy as np

    messages = [*_greeting()[:1], ChatMessage("user", "Tell me about the moon")]
    tokens = llm.prompt_tokens(messages)
    end = max(i for i, t in enumerate(tokens) if t in llm._stop_ids)
    llm.reset()
    with llm._lock:  # the cue as it used to be read: the user's words alone, the last logits
        llm._llm.eval(tokens[:end])
        row = llama_cpp.llama_get_logits_ith(llm._llm.ctx, -1)
        logits = np.ctypeslib.as_array(row, shape=(llm._llm.n_vocab(),)).astype(np.float64)
        llm.rest()
    weights = np.exp(logits - logits.max())
    alone = float(weights[tokens[end]] / weights.sum())

    llm.reset()
    cue = llm.end_of_turn_probability(messages)
    assert cue is not None and abs(cue - alone) < 0.02, (cue, alone)
    after_cue = "".join(t.text for t in llm.stream_chat(messages))
    assert llm.last_stats.evaluated_tokens == 0
    llm.reset()
    cold = "".join(t.text for t in llm.stream_chat(messages))
    assert after_cue == cold
    llm.reset()
    llm.cue_reads_header = False  # the lever's OFF arm: the cue reads the user's words only
    try:
        assert llm.end_of_turn_probability(messages) == pytest.approx(cue, abs=0.02)
        assert "".join(t.text for t in llm.stream_chat(messages)) == cold
        assert llm.last_stats.evaluated_tokens > 1  # the header was left to the reply
    finally:
        llm.cue_reads_header = True


def test_prompt_tokens_by_message_equal_the_whole_prompt_tokenized(llm) -> None:
    """Past messages are tokenized once; the ids must be exactly llama.cpp's for the whole text."""
    assert llm._messages.marker == "<|im_start|>"
    history = [*_greeting()[:1]]
    for question, answer in [
        ("What is the capital of France?", "Paris, of course!\n\nIt's lovely."),
        ("  spaces   and ünïcödé… 🙂", "<|im_end|> is just text here, isn't it?"),
        ("Tell me about the moon", "The moon orbits Earth every 27.3 days."),
    ]:
        history.append(ChatMessage("user", question))
        for messages in (history, [*history, ChatMessage("user", "and the sun")]):
            arranged = llm.style.arrange(messages)  # with the style's few-shot turns, as the engine renders it
            rendered = llm._formatter(messages=[{"role": m.role, "content": m.content} for m in arranged]).prompt
            whole = llm._llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
            assert llm.prompt_tokens(messages) == whole
            assert llm.prompt_tokens(messages) == whole  # a second time, from the remembered pieces
        history.append(ChatMessage("assistant", answer))


def test_a_reply_never_starts_from_another_positions_logits(llm) -> None:
    """Scored tokens evaluated on the engine directly, then rolled back: the reply re-evaluates its last token.

    The stale logits would continue " Red, green and blue." instead of answering, so the first token tells.
    Later tokens may part where a batch and a one-token decode of the prompt's last token round differently
    (llama.cpp's prompt kernel and Doppel's decode kernel); that is not what this guards.
    """
    messages = [*_greeting()[:1], ChatMessage("user", "Name three colours of the rainbow.")]
    llm.reset()
    cold = [t.text for t in llm.stream_chat(messages)]
    llm.prefill(messages)
    with llm._lock:  # what the bench's reply scoring does
        n = llm._llm.n_tokens
        llm._llm.eval(llm._llm.tokenize(b" Red, green and blue.", add_bos=False))
        llm._llm.n_tokens = n
    again = [t.text for t in llm.stream_chat(messages)]
    assert llm.last_stats.evaluated_tokens == 1
    assert again[0] == cold[0]
    import llama_cpp

    with llm._lock:  # the stale state's own next token, for contrast: not the reply's opening
        llm._llm.eval(llm._llm.tokenize(b" Red, green and blue.", add_bos=False))
        row = llama_cpp.llama_get_logits_ith(llm._llm.ctx, -1)
        stale = llm._llm.detokenize([int(np.argmax(np.ctypeslib.as_array(row, shape=(llm._llm.n_vocab(),))))])
        llm._llm.n_tokens = n
    llm.reset()
    assert stale.decode(errors="replace") != cold[0]
