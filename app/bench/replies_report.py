"""The reply bench's command and report: loads each model once, runs every variant, writes replies.json/.md."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.bench.replies import SUBSET, SUBSET_SPOKEN, scripts
from app.bench.replies_run import Variant, by_kind, loadavg, parse_variant, run_typed, run_variant
from app.config import Config

COLUMNS = ("right", "parrot", "repeat", "leak", "cut", "long", "language", "ok")


def default_variants() -> list[Variant]:
    """The shipped default, and every other bundled model that is installed, each with its default style."""
    from app.engines.llm_choices import installed

    return [Variant(name, model=name) for name in installed()]


def load_model(config: Config, model: str) -> Any:
    from app.compose import load_local_llm
    from app.engines.llm_choices import path_for

    return load_local_llm(replace(config, llm_model=path_for(model)))


def run_replies(
    config: Config,
    out_dir: Path,
    variants: list[Variant],
    *,
    quick: bool = False,
    spoken: bool = True,
    engines: Any = None,
    rounds: int = 1,
    progress=lambda _m: None,
) -> dict:
    """Every variant on the prompts (``quick``: the small subset); ``engines``: models already loaded."""
    from app.compose import load_asr, load_tts
    from app.engines.llm_choices import path_for

    out_dir.mkdir(parents=True, exist_ok=True)
    started, t0, load_start = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter(), loadavg()
    if engines is None and spoken:
        from app.compose import Engines

        progress("Loading the recogniser and the voice…")
        engines = Engines(asr=load_asr(config), llm=None, tts=load_tts(config, deterministic=True), load_s={})  # type: ignore[arg-type]
    loaded: dict[str, Any] = {}
    entries = []
    for variant in variants:
        key = path_for(variant.model) or ""
        if key not in loaded:
            if engines is not None and engines.llm is not None and not key:
                loaded[key] = engines.llm
            else:
                progress(f"Loading {variant.model or 'the default model'}…")
                loaded[key] = load_model(config, variant.model)
        entries.append((variant, loaded[key]))
    progress(f"Typed prompts: {len(entries)} variants interleaved, {rounds} round(s)")
    typed = run_typed(entries, config, scripts(SUBSET if quick else None), progress, rounds)
    spoken_ids = SUBSET_SPOKEN if quick else None
    results = [
        run_variant(v, llm, typed[v.label], engines if spoken else None, config, spoken_ids, out_dir, progress)
        for v, llm in entries
    ]
    for llm in loaded.values():
        if hasattr(llm, "set_style"):
            llm.set_style(llm.default_style)  # the models go back as they were loaded
    doc = {
        "run": {
            "started": started,
            "duration_s": round(time.perf_counter() - t0, 1),
            "argv": sys.argv,
            "loadavg_start": load_start,
            "loadavg_end": loadavg(),
            "quick": quick,
            "rounds": rounds,
        },
        "persona": config.system_prompt,
        "variants": results,
    }
    (out_dir / "replies.json").write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    (out_dir / "replies.md").write_text(markdown(doc), encoding="utf-8")
    return doc


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f} %"


def _num(x: float | None, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:.0f}{unit}"


def markdown(doc: dict) -> str:
    run = doc["run"]
    lines = [
        "# Reply quality (`doppel bench --replies`)",
        "",
        f"Run {run['started']}, {run['duration_s']} s, load average {run['loadavg_start']} → {run['loadavg_end']}"
        f"{' (quick subset)' if run['quick'] else ''}.",
        "",
        f"Typed prompts, {run.get('rounds', 1)} round(s) (one sampling seed each), the variants interleaved "
        "script by script so a busy machine slows each alike: rates over all replies (right: over the replies "
        "with a checkable answer); median TTFT with the persona, few-shot turns and history cached (the user's "
        "message evaluated cold), TPS over all reply tokens.",
        "",
        "| variant | style | replies | " + " | ".join(COLUMNS) + " | TTFT | TPS | 20/TPS + TTFT |",
        "|---|---|--:|" + "--:|" * len(COLUMNS) + "--:|--:|--:|",
    ]
    for v in doc["variants"]:
        s, lat = v["typed"]["summary"], v["typed"]["latency"]
        cells = " | ".join(_pct(s[c]) for c in COLUMNS)
        lines.append(
            f"| {v['variant']['label']} | {v['style']} | {s['replies']} | {cells} | {_num(lat['ttft_ms'], ' ms')} "
            f"| {_num(lat['tps'])} | {_num(lat['llm_latency_ms'], ' ms')} |"
        )
    lines += ["", "Right answers by kind of prompt (typed):", "", "| variant | " + " | ".join(_kinds(doc)) + " |"]
    lines.append("|---|" + "--:|" * len(_kinds(doc)))
    for v in doc["variants"]:
        kinds = by_kind(v["typed"]["replies"])
        lines.append(f"| {v['variant']['label']} | " + " | ".join(kinds.get(k, "-") for k in _kinds(doc)) + " |")
    spoken = [v for v in doc["variants"] if "spoken" in v]
    if spoken:
        lines += [
            "",
            "Spoken prompts (Piper voice, one conversation through the real pipeline, with the face):",
            "",
            "| variant | heard as turns | right | ok | end of speech → first audio p50 / p90 | 20/TPS + TTFT p50 |",
            "|---|--:|--:|--:|--:|--:|",
        ]
        for v in spoken:
            sp = v["spoken"]
            fa, lm = sp["speech_end_to_first_audio_ms"], sp["pipeline_llm_latency_ms"]
            s = sp["summary"]
            lines.append(
                f"| {v['variant']['label']} | {s['replies']}/{sp['asked']} | {_pct(s['right'])} | {_pct(s['ok'])} "
                f"| {_num(fa['p50'])} / {_num(fa['p90'])} ms | {_num(lm['p50'], ' ms')} |"
            )
    for v in doc["variants"]:
        rounds = max(1, run.get("rounds", 1))
        rows = v["typed"]["replies"]
        first = rows[: len(rows) // rounds]  # rows come round by round; every round is in replies.json
        lines += _listing(f"{v['variant']['label']}: typed replies of the first round", first)
        if "spoken" in v:
            lines += _listing(f"{v['variant']['label']}: spoken (as the recogniser heard it)", v["spoken"]["replies"])
    return "\n".join(lines) + "\n"


def _listing(title: str, rows: list[dict]) -> list[str]:
    lines = ["", f"## {title}", "", "| | prompt | reply | flags |", "|---|---|---|---|"]
    for r in rows:
        flags = [c for c in COLUMNS[1:-1] if r[c]]
        if r["right"] is False:
            flags.insert(0, "wrong")
        text = r["reply"].replace("|", "\\|").replace("\n", " ")
        heard = r.get("extra", {}).get("heard")
        prompt = r["user"] if heard is None else f"{r['user']} (heard: {heard})"
        lines.append(f"| {r['script']} | {prompt} | {text} | {', '.join(flags)} |")
    return lines


def _kinds(doc: dict) -> list[str]:
    seen: list[str] = []
    for v in doc["variants"]:
        for r in v["typed"]["replies"]:
            if r["right"] is not None and r["kind"] not in seen:
                seen.append(r["kind"])
    return seen


def run_cli(config: Config, out_dir: Path, quick: bool, specs: list[str], spoken: bool, rounds: int = 1) -> int:
    variants = [parse_variant(s) for s in specs] if specs else default_variants()

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    doc = run_replies(config, out_dir, variants, quick=quick, spoken=spoken, rounds=rounds, progress=say)
    for v in doc["variants"]:
        s, lat = v["typed"]["summary"], v["typed"]["latency"]
        print(
            f"[{v['variant']['label']}] right {_pct(s['right'])} parrot {_pct(s['parrot'])} leak {_pct(s['leak'])} "
            f"ok {_pct(s['ok'])}; 20/TPS + TTFT {_num(lat['llm_latency_ms'], ' ms')}",
            file=sys.stderr,
        )
    print(out_dir / "replies.md")
    return 0
