"""The LLM levers: Q8_0, repacked IQ4_NL and untied copies, the KV prefix cache, and speculative prefill.

Each arm empties the KV cache first (``forget``) and then builds exactly the
cache state the app would have at that moment; the prompt-cache arms decode
greedily so their first tokens can be compared, which is their quality guard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.bench.levers import Lever, Rig, interleave
from app.bench.perplexity import perplexity
from app.config import cache_dir
from app.core.engines import ChatMessage

PROMPT_MAX_TOKENS = 41  # the first token + the 40 the TPS is measured over
LONG_ASK = "Tell me a long story about a brave knight and a dragon."


def forget(llm: Any) -> None:
    """Empty the KV cache (LlamaCppLlm has no public switch yet; its Llama's ``reset`` does it)."""
    reset = getattr(llm, "reset", None)
    (reset if callable(reset) else llm._llm.reset)()


@contextmanager
def tuned(llm: Any, max_tokens: int, temp: float = 0.0) -> Iterator[None]:
    """Greedy decoding (so arms can be compared token for token) and a fixed length, restored after."""
    saved = (llm.max_tokens, dict(llm.sampling))
    llm.max_tokens, llm.sampling = max_tokens, {**llm.sampling, "temp": temp}
    try:
        yield
    finally:
        llm.max_tokens, llm.sampling = saved[0], saved[1]


def timed_reply(llm: Any, messages: list[ChatMessage], max_tokens: int = 1) -> dict:
    """TTFT, and TPS over the tokens after the first, for up to ``max_tokens`` tokens."""
    stamps: list[float] = []
    pieces: list[str] = []
    started = time.perf_counter()
    stream = llm.stream_chat(messages)
    try:
        for token in stream:
            stamps.append(time.perf_counter())
            pieces.append(token.text)
            if len(stamps) >= max_tokens:
                break
    finally:
        stream.close()
    n = len(stamps)
    return {
        "ttft_ms": (stamps[0] - started) * 1000 if n else None,
        "tps": (n - 1) / (stamps[-1] - stamps[0]) if n > 1 else None,
        "tokens": n,
        "first": pieces[0] if pieces else "",
        "text": "".join(pieces),
        "prompt_tokens": llm.last_stats.prompt_tokens,
        "evaluated_tokens": llm.last_stats.evaluated_tokens,
    }


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _same_first(lever: Lever) -> str:
    same = sum(a["first"] == b["first"] for a, b in zip(lever.off, lever.on, strict=True))
    return f"same first token (greedy) {same}/{len(lever.off)}"


# --- the levers -------------------------------------------------------------------------------


def lever_requant(rig: Rig) -> Lever:
    """Shipped Q4_1 vs the cached Q8_0 copy: cold TTFT, TPS, size, memory, and perplexity."""
    from app.engines.llm_quantize import requantized

    return _lever_copy(rig, "Q8_0 re-quantization", "cached Q8_0 copy", requantized)


def lever_repack(rig: Rig) -> Lever:
    """Shipped Q4_1 vs the cached IQ4_NL copy, which llama.cpp repacks into its interleaved CPU kernels."""
    from app.engines.llm_quantize import repacked

    return _lever_copy(rig, "IQ4_NL copy, repacked", "cached IQ4_NL copy (repacked)", repacked)


def lever_untie(rig: Rig) -> Lever:
    """Shipped file (output layer tied to the embeddings) vs its untied copy: the same weights, so greedy
    tokens must match and the perplexity must not move."""
    from app.engines.llm_quantize import untied

    lever = _lever_copy(rig, "output layer untied", "cached untied copy (same weights)", untied)
    lever.quality = f"{lever.quality}; {_same_first(lever)}"
    return lever


def _lever_copy(rig: Rig, title: str, label: str, make_copy: Callable[..., Path]) -> Lever:
    """The shipped file vs a cached copy of it in another type, interleaved, with perplexity as the guard."""
    from app.engines.llm_llama import LlamaCppLlm
    from app.model_registry import resolve

    cfg = rig.config
    source = resolve("llm", cfg.llm_model)
    copy = make_copy(source, cache_dir() / "models", threads=cfg.llm_threads)
    lever = Lever(
        title,
        source.name,
        label,
        (
            ("ttft_ms", "cold TTFT (ms)"),
            ("tps", "TPS over 40 tokens"),
            ("file_mb", "file (MB)"),
            ("rss_mb", "RSS added by loading (MB)"),
        ),
    )
    models, sizes = {}, {}
    for arm, path in (("off", source), ("on", copy)):
        before = rss_mb()
        llm = rig.on_llm(
            lambda p=path: LlamaCppLlm(p, threads=cfg.llm_threads, max_tokens=PROMPT_MAX_TOKENS, temperature=0)
        )
        rig.on_llm(lambda m=llm: timed_reply(m, [ChatMessage("user", "Hello")], 8))  # touch the weights
        models[arm], sizes[arm] = llm, {"file_mb": path.stat().st_size / 1e6, "rss_mb": rss_mb() - before}
    prompt = [*rig.history(), ChatMessage("user", LONG_ASK)]  # ~115 tokens, as on turn 3

    def arm(name: str) -> Callable[[int], dict]:
        def run(_i: int) -> dict:
            forget(models[name])
            return {**rig.on_llm(lambda: timed_reply(models[name], prompt, PROMPT_MAX_TOKENS)), **sizes[name]}

        return run

    interleave(lever, rig.reps, arm("off"), arm("on"))
    del llm
    models.clear()  # free both before the perplexity models load
    ppl = {
        arm: rig.on_llm(lambda p=p: perplexity(p, threads=cfg.llm_threads))
        for arm, p in (("off", source), ("on", copy))
    }
    change = (ppl["on"].ppl / ppl["off"].ppl - 1) * 100
    lever.quality = f"PPL {ppl['off'].ppl:.3f} → {ppl['on'].ppl:.3f} ({change:+.2f}%)"
    lever.extra = {"perplexity": {k: vars(v) for k, v in ppl.items()}, "same_file": copy == source}
    return lever


def lever_prefix_cache(rig: Rig) -> Lever:
    """Turn 3 with the system prompt and two turns still in the KV cache vs a cold prompt."""
    llm, conv = rig.llm, rig.history()
    lever = Lever("KV prefix cache", "cold prompt", "system + history cached", (("ttft_ms", "TTFT turn 3 (ms)"),))

    def reply(cached: bool, i: int) -> dict:
        forget(llm)
        if cached:
            llm.prefill(conv)
        return timed_reply(llm, [*conv, ChatMessage("user", rig.question(i))])

    return _race_first_tokens(rig, lever, reply)


def lever_speculative_prefill(rig: Rig) -> Lever:
    """The user's words and the assistant header evaluated during the silence window vs neither."""
    llm = rig.llm
    lever = Lever(
        "speculative prefill",
        "system prompt cached only",
        "+ user words + assistant header",
        (("ttft_ms", "TTFT after commit (ms)"), ("evaluated_tokens", "tokens evaluated at commit")),
    )

    def reply(speculate: bool, i: int) -> dict:
        messages = [rig.system(), ChatMessage("user", rig.question(i))]
        forget(llm)
        llm.prefill([rig.system()])  # the warm-up the app does at start
        if speculate:
            llm.prefill(messages)
        return timed_reply(llm, messages)

    return _race_first_tokens(rig, lever, reply)


def lever_cue_with_header(rig: Rig) -> Lever:
    """The end-of-turn cue and the reply's header in one batch vs the cue, then the header in the reply's."""
    llm = rig.llm
    lever = Lever(
        "end-of-turn cue + reply header in one batch",
        "cue on the user's words, header with the reply",
        "one batch, two outputs",
        (("ttft_ms", "cue + first token (ms)"), ("evaluated_tokens", "tokens the reply evaluated")),
    )
    saved = llm.cue_reads_header

    def reply(one_batch: bool, i: int) -> dict:
        words = rig.question(i).rstrip("?.!").split()  # a turn the cue is asked about (no final "?")
        system = rig.system()
        forget(llm)
        llm.prefill([system, ChatMessage("user", " ".join(words[:-1]))])  # the last draft lacked a word
        messages = [system, ChatMessage("user", " ".join(words))]
        llm.cue_reads_header = one_batch
        started = time.perf_counter()
        cue = llm.end_of_turn_probability(messages)
        cue_ms = (time.perf_counter() - started) * 1000
        timed = timed_reply(llm, messages)
        return {**timed, "ttft_ms": cue_ms + (timed["ttft_ms"] or 0.0), "cue": cue}

    try:
        _race_first_tokens(rig, lever, reply)
    finally:
        llm.cue_reads_header = saved
    cues = [(a["cue"], b["cue"]) for a, b in zip(lever.off, lever.on, strict=True) if a["cue"] is not None]
    if cues:
        lever.quality += f"; P(end of turn) differs by ≤ {max(abs(a - b) for a, b in cues):.4f}"
    return lever


def _race_first_tokens(rig: Rig, lever: Lever, reply: Callable[[bool, int], dict]) -> Lever:
    """OFF and ON interleaved on the LLM's worker (one token each: TTFT is the measure), then compared."""

    def arm(on: bool) -> Callable[[int], dict]:
        return lambda i: rig.on_llm(lambda: reply(on, i))

    with tuned(rig.llm, 1):
        interleave(lever, rig.reps, arm(False), arm(True))
    lever.quality = _same_first(lever)
    return lever
