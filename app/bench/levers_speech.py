"""The speech levers: Whisper's short window, a short first clause to TTS, and the LLM/TTS thread plan.

The ASR lever is also the short window's quality guard: every bench question
is transcribed both ways and scored against its text.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.bench.levers import Lever, Rig, interleave
from app.bench.levers_llm import tuned
from app.bench.questions import QUESTIONS, word_error_rate
from app.core.chunker import Chunker, speakable
from app.core.engines import ChatMessage

PLAN_MAX_TOKENS = 48
# Open questions, whose replies go on after the first clause: the LLM then competes with Piper for the cores.
PLAN_QUESTIONS = tuple(q.text for q in QUESTIONS if q.id in ("q02", "q04", "q06", "q09", "q11", "q12"))
# Typical two-sentence replies: the chunker's first clause vs the whole first sentence goes to Piper.
REPLIES = (
    "Sure, a good cup of tea starts with freshly boiled water and a warm pot. Let it steep for four minutes.",
    "The sky looks blue because air scatters short blue waves of sunlight more than red ones. Sunsets look red.",
    "If you only have eggs and rice, a simple fried rice with a little soy sauce would be lovely. Add some onion.",
    "The moon is about three hundred and eighty thousand kilometres away from the earth. Light takes a second.",
    "I would take a long, gentle novel on a train, something like a family saga you can get lost in. Enjoy it.",
    "Octopuses have three hearts and blue blood, which still surprises most people. They are very clever too.",
    "On a rainy weekend I like to stay in with a good book and a pot of coffee. Sometimes I bake bread as well.",
    "To sleep better, try going to bed at the same time every night and keep your room cool. Avoid late screens.",
)


def lever_asr_window(rig: Rig) -> Lever:
    """WhisperAsr's short window vs faster-whisper's own 30 s decode (greedy in both) on every question."""
    asr = rig.asr
    ids = list(rig.audio)
    lever = Lever("Whisper short window", "30 s window (faster-whisper)", "5 s window", (("asr_ms", "ASR time (ms)"),))

    def arm(short: bool) -> Callable[[int], dict]:
        def run(i: int) -> dict:
            qid = ids[i % len(ids)]
            started = time.perf_counter()
            text = asr.transcribe(rig.audio[qid], full_window=not short).text
            return {"asr_ms": (time.perf_counter() - started) * 1000, "id": qid, "text": text}

        return run

    interleave(lever, max(2 * rig.reps, len(ids)), arm(False), arm(True))
    wer = {name: asr_wer(samples) for name, samples in (("off", lever.off), ("on", lever.on))}
    first = {
        name: {s["id"]: s["text"] for s in reversed(samples)}
        for name, samples in (("off", lever.off), ("on", lever.on))
    }
    same = sum(_norm(first["off"][q]) == _norm(first["on"][q]) for q in ids)
    lever.quality = f"WER {wer['off']['corpus']:.3f} → {wer['on']['corpus']:.3f}; same transcript {same}/{len(ids)}"
    lever.extra = {
        "wer": wer,
        "differs": {
            q: [first["off"][q], first["on"][q]] for q in ids if _norm(first["off"][q]) != _norm(first["on"][q])
        },
    }
    return lever


def asr_wer(samples: list[dict]) -> dict:
    """Word error of each question's first transcript: corpus-level (errors / words) and per-question mean."""
    texts = {q.id: q.text for q in QUESTIONS}
    first = {s["id"]: s["text"] for s in reversed(samples)}
    words = {q: max(1, len(_norm(texts[q]).split())) for q in first}
    per = {q: word_error_rate(texts[q], t) for q, t in first.items()}
    corpus = sum(per[q] * words[q] for q in per) / max(1, sum(words.values()))
    return {"corpus": corpus, "mean": float(np.mean(list(per.values()))), "per_question": per}


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in "' ").split())


def first_clause(pieces: list[str]) -> str:
    """What the pipeline's chunker sends to TTS first, fed the reply's tokens as the LLM streams them."""
    chunker = Chunker()
    for piece in pieces:
        chunk = chunker.push(piece)
        if chunk:
            return chunk
    return chunker.flush() or "".join(pieces)


def token_pieces(texts: tuple[str, ...], model_path: Path) -> list[list[str]]:
    """Each text cut into the LLM's own tokens (its chunker counts tokens), with a vocabulary-only load."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    try:
        return [
            [vocab.detokenize([t]).decode("utf-8", "replace") for t in vocab.tokenize(text.encode(), add_bos=False)]
            for text in texts
        ]
    finally:
        vocab.close()


def lever_first_clause(rig: Rig) -> Lever:
    """Piper's time to first audio for the chunker's first clause vs the whole first sentence."""
    from app.model_registry import resolve

    tts = rig.tts
    pieces = token_pieces(REPLIES, resolve("llm", rig.config.llm_model))
    lever = Lever(
        "short first clause",
        "whole first sentence",
        "chunker's first clause",
        (("tts_first_ms", "TTS first audio (ms)"), ("audio_s", "first audio length (s)"), ("words", "words")),
    )

    def arm(clause: bool) -> Callable[[int], dict]:
        def run(i: int) -> dict:
            k = i % len(REPLIES)
            text = first_clause(pieces[k]) if clause else REPLIES[k].split(". ")[0] + "."
            started = time.perf_counter()
            stream = tts.synthesize(speakable(text))
            chunk = next(stream)
            ms = (time.perf_counter() - started) * 1000
            stream.close()
            return {"tts_first_ms": ms, "audio_s": len(chunk.audio) / chunk.sample_rate, "words": len(text.split())}

        return run

    interleave(lever, max(2 * rig.reps, len(REPLIES)), arm(False), arm(True))
    lever.quality = "same words spoken (only where the audio is cut changes)"
    return lever


def lever_thread_plan(rig: Rig) -> Lever:
    """TTS of the first clause while the LLM keeps generating on its 2 threads vs the LLM pausing for it."""
    from app.core import conversation

    yield_s = getattr(conversation, "FIRST_AUDIO_YIELD_S", 1.0)
    lever = Lever(
        "thread plan",
        "LLM runs on during first TTS",
        f"LLM pauses until first audio (≤{yield_s:g} s)",
        (
            ("tts_first_ms", "TTS first audio (ms)"),
            ("llm_tps", "LLM TPS after the first clause, pause excluded"),
            ("reply_done_ms", "LLM reply done (ms)"),
        ),
    )

    def arm(pause: bool) -> Callable[[int], dict]:
        def run(i: int) -> dict:
            question = PLAN_QUESTIONS[i % len(PLAN_QUESTIONS)]
            return plan_turn(rig, [rig.system(), ChatMessage("user", question)], pause, yield_s)

        return run

    with tuned(rig.llm, PLAN_MAX_TOKENS, temp=rig.config.temperature):
        interleave(lever, rig.reps, arm(False), arm(True))
    lever.quality = "timing only (same prompt and sampling)"
    return lever


def plan_turn(rig: Rig, messages: list[ChatMessage], pause: bool, yield_s: float) -> dict:
    """The pipeline's LLM -> TTS hand-off reproduced with the engines: LLM thread streams, TTS here."""
    llm = rig.llm
    rig.on_llm(lambda: llm.prefill(messages))  # as after speculation: the reply starts at once
    handoff: queue.Queue[tuple[str, float]] = queue.Queue()
    first_audio = threading.Event()
    box: dict = {"stamps": [], "paused": 0.0, "handed_at": None}

    def generate() -> None:
        chunker, stamps = Chunker(), box["stamps"]
        box["started"] = time.perf_counter()
        for token in llm.stream_chat(messages):
            stamps.append(time.perf_counter())
            chunk = chunker.push(token.text)
            if chunk and box["handed_at"] is None:
                box["handed_at"] = len(stamps)
                handoff.put((chunk, time.perf_counter()))
                if pause:
                    first_audio.wait(yield_s)
                    box["paused"] = time.perf_counter() - stamps[-1]
        if box["handed_at"] is None:
            handoff.put((chunker.flush() or "Okay.", time.perf_counter()))

    future = rig.submit_llm(generate)
    text, handed = handoff.get(timeout=120)
    stream = rig.tts.synthesize(speakable(text) or "Okay.")
    next(stream)
    tts_ms = (time.perf_counter() - handed) * 1000
    first_audio.set()
    stream.close()
    future.result()
    stamps, k = box["stamps"], box["handed_at"] or len(box["stamps"])
    rest = stamps[k - 1 :]  # from the token that completed the first clause to the end
    running = rest[-1] - rest[0] - (box["paused"] if len(rest) > 1 else 0.0)
    return {
        "tts_first_ms": tts_ms,
        "llm_tps": (len(rest) - 1) / running if len(rest) > 1 and running > 0 else None,
        "reply_done_ms": (stamps[-1] - box["started"]) * 1000,
        "tokens": len(stamps),
        "clause_tokens": k,
    }
