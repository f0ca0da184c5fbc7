"""What the pipeline is measured against: its own engines called directly, and the seed's figures.

For each question the engines run back to back on the calling thread, with
nothing else going on: wait out the silence window, ASR on the whole
utterance, the full LLM reply (timing the first token and the moment the
chunker would release the first clause), TTS of that first clause alone,
TTS of the whole reply, one replica frame.  Two baselines come from one pass:

* raw (the limit of a streaming design that starts at the first silent frame):
  the larger of the silence window and ASR + LLM up to the first clause + TTS
  of that clause (+ one frame);
* naive (a sequential chain): silence window + ASR + the full reply + TTS of
  all of it (+ one frame).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from app.bench.questions import Question, word_error_rate
from app.config import Config
from app.core.chunker import Chunker, speakable
from app.core.engines import ChatMessage
from app.core.events import now_ns
from app.core.jobs import EngineSet
from app.core.metrics import llm_latency_ms

T = TypeVar("T")

# (name, TTFT ms, TPS) as the seed states them.
SEED_REFERENCE = (
    ("Tavus before", 300.0, 33.0),
    ("Tavus with Cerebras", 100.0, 100.0),
    ("Cerebras Llama-3.1-8B", 440.0, 2000.0),
)


def seed_rows() -> list[dict]:
    return [
        {"name": name, "ttft_ms": ttft, "tps": tps, "llm_latency_ms": llm_latency_ms(ttft, tps)}
        for name, ttft, tps in SEED_REFERENCE
    ]


def in_own_thread(fn: Callable[[], T], name: str = "bench-direct") -> T:
    """Run ``fn`` on a thread that ends when it returns, and give back its result.

    llama.cpp's OpenMP team belongs to the calling thread and lives as long as
    it does. A team left on the bench's main thread would sit beside the
    pipeline's own (``doppel-llm``) and, with more threads than cores, libgomp
    switches to short spins: the session would then run under different
    spin-wait rules than the app does (measured: 3 vs 20 tokens/s under load).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised on the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0


def direct_chain(config: Config, engines: EngineSet, q: Question, audio: np.ndarray, face: Any | None) -> dict:
    """One question through the engines called directly; every step's time, and both baselines."""
    assert engines.asr is not None
    out: dict[str, Any] = {"input": q.id}
    t = time.perf_counter()
    time.sleep(config.silence_ms / 1000.0)  # the naive chain waits out the end-of-turn window
    out["silence_ms"] = _ms(t)
    t = time.perf_counter()
    transcript = engines.asr.transcribe(audio)
    out["asr_ms"] = _ms(t)
    out["heard"] = transcript.text
    out["asr_wer"] = word_error_rate(q.text, transcript.text)
    messages = [ChatMessage("system", config.system_prompt), ChatMessage("user", transcript.text)]
    chunker, pieces, stamps = Chunker(), [], []
    first_chunk: str | None = None
    t = time.perf_counter()
    for token in engines.llm.stream_chat(messages):
        stamps.append(time.perf_counter())
        pieces.append(token.text)
        chunk = chunker.push(token.text)
        if first_chunk is None and chunk and speakable(chunk):
            first_chunk, out["first_chunk_ms"] = chunk, _ms(t)
    out["llm_total_ms"] = _ms(t)
    reply = "".join(pieces).strip()
    if first_chunk is None:  # a reply too short for a clause boundary goes out whole at the end
        first_chunk, out["first_chunk_ms"] = chunker.flush() or reply, out["llm_total_ms"]
    n = len(stamps)
    out["n_tokens"] = n
    out["ttft_ms"] = (stamps[0] - t) * 1000.0 if n else None
    out["tps"] = (n - 1) / (stamps[-1] - stamps[0]) if n >= 2 and stamps[-1] > stamps[0] else None
    out["llm_latency_ms"] = llm_latency_ms(out["ttft_ms"], out["tps"])
    out["twentieth_token_ms"] = (stamps[19] - t) * 1000.0 if n >= 20 else None
    ceiling = getattr(engines.llm, "raw_decode_tps", None)  # bare llama_decode: llama-bench's tg, same library
    out["raw_decode_tps"] = ceiling() if ceiling is not None else None
    if ceiling is not None:  # at the reply's own depth: llama-bench's tg with -d, the prompt's length
        depth = len(engines.llm.prompt_tokens(messages))  # type: ignore[attr-defined]
        out["raw_decode_tps_at_depth"] = ceiling(n_tokens=max(n, 16), depth=depth)
        out["prompt_tokens"] = depth
    out["reply"] = reply
    if not reply:
        return out
    t = time.perf_counter()
    for _chunk in engines.tts.synthesize(speakable(first_chunk)):
        out["tts_first_ms"] = _ms(t)
        break
    t = time.perf_counter()
    speech = list(engines.tts.synthesize(speakable(reply)))
    out["tts_full_ms"] = _ms(t)
    out["render_ms"] = _render_ms(face, speech[0]) if face is not None and speech else None
    render = out["render_ms"] or 0.0
    if "tts_first_ms" in out:
        raw = max(out["silence_ms"], out["asr_ms"] + out["first_chunk_ms"] + out["tts_first_ms"])
        out["raw_e2e_audio_ms"] = raw
        out["raw_e2e_frame_ms"] = raw + render if face is not None else None
    naive = out["silence_ms"] + out["asr_ms"] + out["llm_total_ms"] + out["tts_full_ms"]
    out["naive_e2e_audio_ms"] = naive
    out["naive_e2e_frame_ms"] = naive + render if face is not None else None
    return out


def _render_ms(face: Any, chunk: Any) -> float:
    """Hand the face its speech and draw the first frame that shows it."""
    start = now_ns()
    t = time.perf_counter()
    face.push_audio(chunk, start)
    face.render(start + 1_000_000)
    ms = _ms(t)
    face.clear_buffer()
    return ms


def run_direct(
    config: Config,
    engines: EngineSet,
    questions: list[Question],
    audio: dict[str, np.ndarray],
    face: Any | None,
    progress: Callable[[str], None] = lambda _m: None,
    deadline: float | None = None,
) -> list[dict]:
    """The direct chain for each question; past ``deadline`` (time.monotonic) it stops, keeping at least one."""
    samples: list[dict] = []
    for q in questions:
        if samples and deadline is not None and time.monotonic() > deadline:
            break
        sample = direct_chain(config, engines, q, audio[q.id], face)
        progress(
            f"  {q.id}: asr {sample['asr_ms']:.0f} ms, reply {sample['n_tokens']} tokens in "
            f"{sample['llm_total_ms']:.0f} ms, naive {sample.get('naive_e2e_audio_ms', 0):.0f} ms"
        )
        samples.append(sample)
    return samples
