"""``doppel bench --replies``: every variant (model, prompt style, sampling) on the same prompts.

Typed prompts go through ``History`` and the engine exactly as a conversation
sends them: a fresh history per script, the persona and few-shot turns (and
the script's earlier turns) prefilled into the KV cache before each message,
as the conversation does between turns, so TTFT covers the user's message
alone.  The spoken prompts are asked aloud (Piper) in one conversation
through the real pipeline, which gives end of speech -> first audio.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.replies import PERSONAS, Score, Script, score, scripts, summary
from app.config import Config
from app.core.history import History

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Variant:
    """``model``: "" the configured model, a bundled name (``app.model_registry.LLM_CHOICES``) or a path."""

    label: str
    model: str = ""
    style: str = ""  # "" the model's default (app/engines/llm_prompt.py)
    sampling: tuple[tuple[str, float], ...] = ()
    system_prompt: str = ""  # "" the configured persona
    max_sentences: int = -1  # -1 the style's own stop rule
    spoken: bool = True  # also through the pipeline (when the run has spoken prompts)


def parse_variant(spec: str) -> Variant:
    """``label:model=gemma,style=chat+examples,temp=0.2,repeat_penalty=1.0`` (every part optional)."""
    label, _, rest = spec.partition(":")
    fields: dict[str, Any] = {"label": label.strip() or spec}
    sampling: list[tuple[str, float]] = []
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, _, value = part.partition("=")
        if key in ("model", "style"):
            fields[key] = value
        elif key == "persona":
            fields["system_prompt"] = PERSONAS[value]
        elif key == "max_sentences":
            fields[key] = int(value)
        elif key == "spoken":
            fields[key] = value not in ("0", "no", "false")
        else:
            sampling.append((key, float(value)))
    return Variant(**fields, sampling=tuple(sampling))


def _ms(a: float, b: float) -> float:
    return round((b - a) * 1000.0, 1)


def ask(llm: Any, history: History, text: str) -> tuple[str, str, dict[str, float | None]]:
    """One typed turn: prefill what came before (untimed), then stream the reply; (text, finish, timing)."""
    prefill = getattr(llm, "prefill", None)
    if prefill is not None:
        prefill(history.snapshot())
    messages = history.messages_for(text)
    started = time.perf_counter()
    first = last = None
    pieces: list[str] = []
    for token in llm.stream_chat(messages):
        last = time.perf_counter()
        first = first or last
        pieces.append(token.text)
    reply = "".join(pieces).strip()
    history.record(text, reply)
    n = len(pieces)
    timing: dict[str, float | None] = {
        "ttft_ms": _ms(started, first) if first else None,
        "tokens": n,
        "decode_s": (last - first) if first and last and n > 1 else None,
    }
    return reply, llm.last_stats.finish_reason, timing


def apply_variant(variant: Variant, llm: Any, config: Config) -> str:
    """Give the engine the variant's style, stop rule and sampling; returns the variant's persona."""
    from app.engines.llm_prompt import STYLES

    if hasattr(llm, "set_style"):
        base = STYLES[variant.style] if variant.style else llm.default_style
        cap = base.max_sentences if variant.max_sentences < 0 else variant.max_sentences
        llm.set_style(replace(base, sampling=(*base.sampling, *variant.sampling), max_sentences=cap))
    return variant.system_prompt or config.system_prompt


def run_typed(
    entries: list[tuple[Variant, Any]], config: Config, chosen: list[Script], progress: Progress, rounds: int = 1
) -> dict[str, list[Score]]:
    """Every script from a fresh history, ``rounds`` times (one sampling seed each), variants interleaved.

    Script by script, each variant in turn: a busy machine slows every variant alike, so
    their latencies can be compared.  Switching variants on one model changes the cached
    prefix; ``ask`` evaluates it again before the clock starts.
    """
    scores: dict[str, list[Score]] = {v.label: [] for v, _ in entries}
    for r in range(rounds):
        for script in chosen:
            for variant, llm in entries:
                persona = apply_variant(variant, llm, config)
                if hasattr(llm, "reseed"):
                    llm.reseed(1234 + r)
                scores[variant.label] += _typed_script(
                    llm, persona, script, f"[{variant.label}]", progress, config.history_tokens
                )
    return scores


def _typed_script(
    llm: Any, persona: str, script: Script, label: str, progress: Progress, history_tokens: int
) -> list[Score]:
    budget = max(256, llm.context_tokens - llm.max_tokens - 64)
    examples = tuple(m.content for m in getattr(getattr(llm, "style", None), "examples", ()) if m.role == "assistant")
    scores: list[Score] = []
    history = History(persona, budget, llm.count_tokens, history_tokens)
    previous = ""
    for turn in script.turns:
        reply, finish, timing = ask(llm, history, turn.text)
        s = score(script, turn, reply, finish, persona, examples, previous)
        previous = reply
        s.extra = timing
        scores.append(s)
        progress(f"    {label} {script.id} {'ok ' if s.ok else 'BAD'} {turn.text!r} -> {reply!r}")
    return scores


def latency(scores: list[Score]) -> dict[str, float | None]:
    """Median TTFT, TPS over every reply's tokens after its first, and 20/TPS + TTFT from those."""
    ttfts = [s.extra["ttft_ms"] for s in scores if s.extra.get("ttft_ms") is not None]
    spans = [(s.extra["tokens"] - 1, s.extra["decode_s"]) for s in scores if s.extra.get("decode_s")]
    tps = sum(n for n, _ in spans) / sum(t for _, t in spans) if spans else None
    ttft = statistics.median(ttfts) if ttfts else None
    return {
        "ttft_ms": round(ttft, 1) if ttft is not None else None,
        "tps": round(tps, 1) if tps else None,
        "llm_latency_ms": round(20_000 / tps + ttft, 1) if tps and ttft is not None else None,
    }


def run_spoken(engines: Any, config: Config, chosen: list[Script], out_dir: Path, progress: Progress) -> dict:
    """The spoken prompts, aloud, in one conversation through the real pipeline (with the replica face)."""
    from app.bench.questions import Question, trim
    from app.bench.session import Session, SessionPlan
    from app.core.audio import resample

    order, turns = [], []
    for script in chosen:
        for k, turn in enumerate(script.turns):
            order.append(Question(f"{script.id}-{k}", turn.text, "piper:1.0"))
            turns.append((script, turn))
    audio = {}
    for q in order:
        pcm = np.concatenate([c.audio for c in engines.tts.synthesize(q.text)])
        audio[q.id] = trim(resample(pcm, engines.tts.sample_rate, 16_000))
    face = None
    try:
        from app.replica import Replica

        face = Replica.from_assets()
    except Exception as exc:  # the face only adds its CPU load; the replies are the point
        progress(f"  replica unavailable ({exc}); spoken latency without the face")
    logs = out_dir / "logs"
    session = Session(
        replace(config, log_dir=str(logs)),
        engines,
        order,
        audio,
        face=face,
        log_path=logs / f"replies-{int(time.time())}.jsonl",
        plan=SessionPlan(playout_cap_s=1.5, generation_grace_s=8.0),
        progress=progress,
    )
    record = session.run()
    by_input = {t["input"]: t for t in record["turns"]}
    examples = tuple(m.content for m in getattr(getattr(engines.llm, "style", None), "examples", ()))
    scores, first_audio, llm_ms, previous = [], [], [], ""
    for q, (script, turn) in zip(order, turns, strict=True):
        t = by_input.get(q.id)
        if t is None or t.get("generated") is None:
            progress(f"    {q.id}: no reply (not heard as a turn)")
            continue
        finish = "length" if t["metrics"].get("n_tokens", 0) >= config.max_reply_tokens else "stop"
        s = score(script, turn, t["generated"] or "", finish, config.system_prompt, examples, previous)
        previous = t["generated"] or ""
        s.extra = {"heard": t["heard"], **{k: t["metrics"].get(k) for k in ("speech_end_to_first_audio_ms",)}}
        scores.append(s)
        m = t["metrics"]
        if m.get("speech_end_to_first_audio_ms") is not None:
            first_audio.append(m["speech_end_to_first_audio_ms"])
        if m.get("llm_latency_ms") is not None:
            llm_ms.append(m["llm_latency_ms"])
    return {
        "scores": scores,
        "speech_end_to_first_audio_ms": _p50_p90(first_audio),
        "pipeline_llm_latency_ms": _p50_p90(llm_ms),
        "asked": len(order),
    }


def _p50_p90(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "n": 0}
    return {
        "p50": round(float(np.percentile(values, 50)), 1),
        "p90": round(float(np.percentile(values, 90)), 1),
        "n": len(values),
    }


def loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run_variant(
    variant: Variant,
    llm: Any,
    typed: list[Score],
    engines: Any,
    config: Config,
    spoken_ids: tuple[str, ...] | None,
    out_dir: Path,
    progress: Progress,
) -> dict:
    """One variant's record: its typed scores, then (``engines`` given) its spoken prompts."""
    persona = apply_variant(variant, llm, config)
    doc: dict[str, Any] = {
        "variant": variant.__dict__ | {"sampling": dict(variant.sampling)},
        "model": str(getattr(llm, "source_path", getattr(llm, "model_path", ""))),
        "style": getattr(getattr(llm, "style", None), "name", ""),
        "sampling": dict(getattr(llm, "sampling", {})),
        "typed": {"summary": summary(typed), "latency": latency(typed), "replies": [_row(s) for s in typed]},
    }
    chosen = [s for s in scripts(spoken_ids) if s.spoken]
    if engines is not None and chosen and variant.spoken:
        progress(f"[{variant.label}] spoken prompts through the pipeline")
        cfg = replace(config, system_prompt=persona)
        result = run_spoken(replace(engines, llm=llm), cfg, chosen, out_dir, progress)
        sp = result.pop("scores")
        doc["spoken"] = {**result, "summary": summary(sp), "replies": [_row(s) for s in sp]}
    return doc


def _row(s: Score) -> dict:
    return {k: v for k, v in s.__dict__.items()}


def by_kind(rows: list[dict]) -> dict[str, str]:
    """Right answers per kind of prompt, as "right/answerable"."""
    out: dict[str, list[int]] = {}
    for r in rows:
        if r["right"] is None:
            continue
        hit = out.setdefault(r["kind"], [0, 0])
        hit[0] += bool(r["right"])
        hit[1] += 1
    return {k: f"{a}/{b}" for k, (a, b) in out.items()}
