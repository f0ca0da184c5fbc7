"""The shipped Q4_1 or its Q8_0 copy: whichever starts a reply sooner on this CPU, measured once.

Which file is faster depends on the processor.  On the Xeon hosts of
2026-12-05/06 the Q4_1 decoded 5-10 % faster than the Q8_0 copy; on an AMD
EPYC host the copy decoded 7 % faster and evaluated prompts twice as fast
(docs/cpu-plan.md).  So the first run on a machine times both the way a reply
uses them (a short batch after a cached prompt, as at the end of the user's
turn, then single tokens) and remembers the winner per CPU model, file and
thread count in the model cache.  Later runs read the choice and start at once.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

from app.engines.llm_quantize import q8_path_for, requantized, wants_requantize

_log = logging.getLogger(__name__)

CHOICES_FILE = "quant-choice.json"
CONTEXT_TOKENS = 170  # about the persona: every timed token attends to a prompt this long
TAIL_TOKENS = 8  # what a reply evaluates at the end of the user's turn (last words, "?", header)
DECODE_TOKENS = 20  # the seed's 20 tokens
ROUNDS = 3
MARGIN = 0.03  # the copy must be this much faster: it costs ~50 MB more resident memory


def cpu_model() -> str:
    """The processor's model name (the choice is kept per CPU model)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(source: Path, threads: int) -> str:
    """Per CPU model, file, thread count and llama.cpp build (a new build re-measures)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        build = version("llama_cpp_python")
    except PackageNotFoundError:
        build = "?"
    return f"{cpu_model()} | {source.name} {source.stat().st_size} | {threads} threads | llama-cpp-python {build}"


def _read(path: Path) -> dict:
    """The stored choices; empty when the file is missing or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def reply_start_ms(model: Path, threads: int, rounds: int = ROUNDS) -> list[float]:
    """Per round: the tail batch's time plus 20 single tokens' time (ms), i.e. TTFT + 20/TPS without sampling."""
    import llama_cpp

    from app.engines.llm_llama import kv_cache_options

    llm = llama_cpp.Llama(
        str(model), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False, **kv_cache_options("f16")
    )
    out = []
    try:
        phrase = llm.tokenize(b"Tell me a story about the sea and the moon.", add_bos=False)
        prompt = (phrase * (CONTEXT_TOKENS // len(phrase) + 1))[:CONTEXT_TOKENS]
        tail = (phrase * 2)[:TAIL_TOKENS]
        for _ in range(rounds):
            llm.reset()
            llm.eval(prompt)
            started = time.perf_counter()
            llm.eval(tail)
            for i in range(DECODE_TOKENS):
                llm.eval([phrase[i % len(phrase)]])
            out.append((time.perf_counter() - started) * 1000)
    finally:
        llm.close()
    return out


def picked(source: Path, cache: Path, threads: int, rounds: int = ROUNDS) -> Path:
    """``source`` or its Q8_0 copy, whichever this machine runs faster (measured on first use, then remembered)."""
    if not wants_requantize(source):
        return source
    choices_path = cache / CHOICES_FILE
    choices = _read(choices_path)
    key = _key(source, threads)
    entry = choices.get(key)
    chosen = entry.get("file") if isinstance(entry, dict) else None
    copy = q8_path_for(source, cache)
    if chosen == "shipped":
        return source
    if chosen == "q8_0" and copy.exists():
        return requantized(source, cache, threads=threads)  # checks the cached copy is intact
    copy = requantized(source, cache, threads=threads)
    if copy == source:  # the copy could not be made: nothing to compare
        return source
    times: dict[str, list[float]] = {"shipped": [], "q8_0": []}
    try:
        for _ in range(rounds):  # interleaved, so a change in the machine's load hits both alike
            times["shipped"] += reply_start_ms(source, threads, 1)
            times["q8_0"] += reply_start_ms(copy, threads, 1)
    except Exception as exc:  # a file that will not load here: the shipped one, as before this choice
        _log.warning("could not time %s against its Q8_0 copy (%s); running it as shipped", source.name, exc)
        return source
    medians = {name: statistics.median(ms) for name, ms in times.items()}
    winner = "q8_0" if medians["q8_0"] < (1 - MARGIN) * medians["shipped"] else "shipped"
    choices[key] = {"file": winner, "ms": {k: round(v, 1) for k, v in medians.items()}, "measured": time.time()}
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial = choices_path.with_name(choices_path.name + ".partial")
        partial.write_text(json.dumps(choices, indent=1), encoding="utf-8")
        os.replace(partial, choices_path)  # never a half-written file
    except OSError as exc:
        _log.warning("could not remember the LLM file choice in %s (%s)", choices_path, exc)
    _log.info("LLM file on this CPU: %s (reply start %s ms)", winner, choices[key]["ms"])
    return copy if winner == "q8_0" else source


def remembered(source: Path, cache: Path, threads: int) -> dict | None:
    """The stored choice for this machine and file (``doctor`` shows it), or None before the first run."""
    return _read(cache / CHOICES_FILE).get(_key(source, threads)) if source.exists() else None
