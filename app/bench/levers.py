"""`doppel bench --levers`: each latency lever OFF and ON, interleaved in one run, with its quality guard.

A lever's gain is only believable when both arms see the same machine: on a
shared two-core box the load drifts by the minute, so OFF and ON samples
alternate (ABBA order, so neither arm always runs first) and the table shows
medians and their ratio.  Tricks that could cost quality carry their guard in
the same run: word error on the bench's questions for the short ASR window,
perplexity on a fixed text for the Q8_0 re-quantization, and "same first
token" (greedy) for the prompt-cache tricks.  Engines are loaded once; every
llama.cpp call runs on one ``doppel-llm`` thread, as in the app (its OpenMP
team belongs to the calling thread).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.questions import QUESTIONS, ensure_audio, load_audio
from app.config import Config
from app.core.engines import ChatMessage

DEFAULT_REPS = 7
HISTORY = (  # two earlier turns, so turn 3 has a history worth caching
    ("What is the capital of France?", "The capital of France is Paris. It is known for the Eiffel Tower."),
    ("Do you like music?", "I do! I listen to jazz while I cook, and a little piano music in the evening."),
)


@dataclass
class Lever:
    """One lever: the samples of both arms, which metrics to tabulate, and its quality guard."""

    name: str
    off_label: str
    on_label: str
    metrics: tuple[tuple[str, str], ...]  # (sample key, label)
    off: list[dict] = field(default_factory=list)
    on: list[dict] = field(default_factory=list)
    quality: str = ""
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        rows = {}
        for key, label in self.metrics:
            a, b = _median(self.off, key), _median(self.on, key)
            ratio = b / a if a and b is not None else None
            pairs = [(x[key], y[key]) for x, y in zip(self.off, self.on, strict=False) if _num(x, key) and _num(y, key)]
            lower = sum(y < x for x, y in pairs)
            rows[key] = {"label": label, "off": a, "on": b, "on_over_off": ratio, "on_lower": [lower, len(pairs)]}
        return {
            "off": self.off_label,
            "on": self.on_label,
            "rows": rows,
            "quality": self.quality,
            "extra": self.extra,
            "samples": {"off": self.off, "on": self.on},
        }


def _num(sample: dict, key: str) -> bool:
    return isinstance(sample.get(key), int | float)


def _median(samples: list[dict], key: str) -> float | None:
    values = [s[key] for s in samples if _num(s, key)]
    return float(np.median(values)) if values else None


def interleave(lever: Lever, pairs: int, off: Callable[[int], dict], on: Callable[[int], dict]) -> Lever:
    """OFF, ON, ON, OFF, OFF, ON...: alternate arms so drift in the machine's load hits both alike."""
    for i in range(pairs):
        arms = [(lever.off, off), (lever.on, on)]
        for bucket, fn in arms if i % 2 == 0 else arms[::-1]:
            bucket.append(fn(i))
    return lever


class Rig:
    """The loaded engines, the LLM thread, and the bench's spoken questions."""

    def __init__(self, engines: Any, config: Config, audio: dict[str, np.ndarray], reps: int) -> None:
        self.asr, self.llm, self.tts = engines.asr, engines.llm, engines.tts
        self.config, self.audio, self.reps = config, audio, reps
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="doppel-llm")

    def submit_llm(self, fn: Callable[[], Any]) -> Future:
        return self._pool.submit(fn)

    def on_llm(self, fn: Callable[[], Any]) -> Any:
        return self._pool.submit(fn).result()

    def close(self) -> None:
        self._pool.shutdown()

    def system(self) -> ChatMessage:
        return ChatMessage("system", self.config.system_prompt)

    def history(self) -> list[ChatMessage]:
        msgs = [self.system()]
        for user, reply in HISTORY:
            msgs += [ChatMessage("user", user), ChatMessage("assistant", reply)]
        return msgs

    def question(self, i: int) -> str:
        return QUESTIONS[i % len(QUESTIONS)].text


# --- the run and its outputs ------------------------------------------------------------------


def all_levers() -> tuple[Callable[[Rig], Lever], ...]:
    """In run order (imported here: the lever modules build on this one)."""
    from app.bench.levers_cpu import (
        lever_cpu_plan,
        lever_thread_team,
        lever_tts_sleep,
        lever_tts_spin_in_run,
    )
    from app.bench.levers_kv import lever_attention_kernel, lever_kv_cache
    from app.bench.levers_llm import (
        lever_cue_with_header,
        lever_prefix_cache,
        lever_repack,
        lever_requant,
        lever_speculative_prefill,
        lever_untie,
    )
    from app.bench.levers_shift import lever_context_shift
    from app.bench.levers_speech import lever_asr_window, lever_first_clause, lever_thread_plan

    return (
        lever_untie,
        lever_repack,
        lever_requant,
        lever_kv_cache,
        lever_attention_kernel,
        lever_prefix_cache,
        lever_speculative_prefill,
        lever_cue_with_header,
        lever_context_shift,
        lever_asr_window,
        lever_first_clause,
        lever_thread_plan,
        lever_cpu_plan,
        lever_thread_team,
        lever_tts_sleep,
        lever_tts_spin_in_run,
    )


def run_levers(
    engines: Any, config: Config, out: Path, reps: int = DEFAULT_REPS, say: Callable[[str], None] = print
) -> dict:
    """Measure every lever, write ``levers.json`` and ``levers.md`` in ``out``; returns the document."""
    started = time.perf_counter()
    meta = {
        "when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cores": os.cpu_count(),
        "nice": os.nice(0),
        "loadavg_start": os.getloadavg(),
        "reps": reps,
        "order": "ABBA (OFF ON, ON OFF, ...)",
        "llm_threads": config.llm_threads,
        "tts_threads": config.tts_threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    paths = ensure_audio(list(QUESTIONS), out / "questions")
    rig = Rig(engines, config, {qid: load_audio(p) for qid, p in paths.items()}, reps)
    levers: dict[str, dict] = {}
    try:
        for measure in all_levers():
            t = time.perf_counter()
            lever = measure(rig)
            levers[lever.name] = lever.summary()
            say(f"  {lever.name}: {time.perf_counter() - t:.0f} s {lever.quality}")
    finally:
        rig.close()
    meta["loadavg_end"] = os.getloadavg()
    meta["seconds"] = time.perf_counter() - started
    doc = {"meta": meta, "levers": levers}
    out.mkdir(parents=True, exist_ok=True)
    (out / "levers.json").write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "levers.md").write_text(markdown(doc), encoding="utf-8")
    return doc


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"


def markdown(doc: dict) -> str:
    """The before/after table, recomputed only from the document (so the JSON alone can check it)."""
    m = doc["meta"]
    load = lambda xs: " / ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    lines = [
        "# Latency levers, OFF vs ON (interleaved)",
        "",
        f"{m['when_utc']} UTC, {m['cores']} cores, nice {m['nice']}, {m['reps']} repetitions per lever "
        f"({m['order']}), {m['seconds']:.0f} s in all. Load average (1/5/15 min) {load(m['loadavg_start'])} at the "
        f"start, {load(m['loadavg_end'])} at the end. Medians; ON/OFF is the ratio of medians; a pair is one OFF "
        "and one ON sample taken back to back, so the count shows how consistent the gain is under drifting load.",
        "",
        "| lever (OFF → ON) | metric | OFF median | ON median | ON/OFF | ON < OFF in pairs | quality before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, lever in doc["levers"].items():
        for k, row in enumerate(lever["rows"].values()):
            head = f"**{name}** ({lever['off']} → {lever['on']})" if k == 0 else ""
            ratio = f"{row['on_over_off']:.2f}" if row["on_over_off"] is not None else "–"
            quality = lever["quality"] if k == 0 else ""
            lower, n = row["on_lower"]
            cells = [head, row["label"], _fmt(row["off"]), _fmt(row["on"]), ratio, f"{lower}/{n}", quality]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _details(doc["levers"])) + "\n"


def _details(levers: dict) -> list[str]:
    """The quality guards' numbers behind the table's last column."""
    out = ["", "## Quality guards", ""]
    for name, lever in levers.items():
        extra = lever["extra"]
        for arm, p in extra.get("perplexity", {}).items():
            out.append(
                f"- {name}, {arm.upper()}: perplexity {p['ppl']:.3f} on `{p['text_id']}` ({p['tokens_scored']} "
                f"tokens scored, windows of {p['n_ctx']}) — {p['model']}"
            )
        for arm, w in extra.get("wer", {}).items():
            out.append(
                f"- {name}, {arm.upper()} ({lever[arm]}): WER {w['corpus']:.3f} over all words of the "
                f"{len(w['per_question'])} bench questions (mean per question {w['mean']:.3f})"
            )
        for qid, (before, after) in extra.get("differs", {}).items():
            out.append(f"  - {qid}: “{before}” → “{after}”")
    return out if len(out) > 3 else []


def run_cli(config: Config, out: Path, quick: bool) -> int:
    """Entry point for `doppel bench --levers`: load the engines once, measure, print the table."""
    from dataclasses import replace

    from app.compose import load_engines

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    say("Loading models…")
    engines = load_engines(replace(config, llm_backend="local"))
    say("Measuring the levers (OFF/ON interleaved)…")
    doc = run_levers(engines, config, out, reps=3 if quick else DEFAULT_REPS, say=say)
    print(markdown(doc))
    print(out / "levers.md")
    return 0
