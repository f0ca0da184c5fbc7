"""The bench report's session tables: the window beside headless, and the long session in other voices.

Split from ``report`` (which re-exports these names) to keep each file short;
``summary`` and ``fmt`` are the number formatting both use.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def summary(values: Iterable[float | None]) -> dict:
    """n, p50, p90, max of the values that exist (linear-interpolated percentiles)."""
    vals = np.array([v for v in values if v is not None], dtype=float)
    if not len(vals):
        return {"n": 0, "p50": None, "p90": None, "max": None}
    p50, p90 = np.percentile(vals, [50, 90])
    return {"n": len(vals), "p50": float(p50), "p90": float(p90), "max": float(vals.max())}


def fmt(v: float | None, unit: str = "ms") -> str:
    if v is None:
        return "n/a"
    if unit == "x":
        return f"{v:.2f}×" if v >= 0.1 else f"{v:.3f}×"
    if unit == "%":
        return f"{v * 100:.0f} %"
    return f"{v:.0f}" if unit == "ms" or abs(v) >= 100 else f"{v:.1f}"


GUI_KEYS = (
    ("ttft_ms", "TTFT", "ms"),
    ("tps", "TPS", ""),
    ("llm_latency_ms", "20/TPS + TTFT", "ms"),
    ("speech_end_to_first_audio_ms", "end of speech -> first audio", "ms"),
)


def ratio(a: float | None, b: float | None) -> float | None:
    """a ÷ b, or None when either is missing (or b is zero)."""
    return a / b if a is not None and b else None


def paired_ratios(session: dict, key: str = "given_tps") -> list[float]:
    """Each turn's TPS over the engine alone between turns: on its very prompt and tokens, or (``persona_tps``)
    answering its words after the persona alone."""
    turns = session.get("turns") or []
    pairs = [
        ratio(turns[r["turn"]]["metrics"].get("tps"), r[key])
        for r in session.get("same_prompts_alone") or []
        if r.get(key) and r.get("turn") is not None and r["turn"] < len(turns)
    ]
    return [r for r in pairs if r is not None]


def same_prompts_summary(session: dict, pipeline_tps: float | None) -> dict:
    """The engine alone on the session's own prompts (app/bench/replay.py) and the pipeline's share of it."""
    rows = session.get("same_prompts_alone") or []
    tps = summary([r["tps"] for r in rows])
    paired = paired_ratios(session)
    persona = summary([r.get("persona_tps") for r in rows])
    return {
        "tps": tps,
        "prompt_tokens": summary([r["prompt_tokens"] for r in rows]),
        "pipeline_over_alone": ratio(pipeline_tps, tps["p50"]),
        # The same prompt and the same tokens (app/engines/llm_given.py), turn by turn.
        "given_tps": summary([r.get("given_tps") for r in rows]),
        "pipeline_over_given": {**summary(paired), "at_least_0_9": sum(r >= 0.9 for r in paired)},
        # The bench's direct calls (persona and words alone), made between the turns they pair with.
        "persona_tps": persona,
        "pipeline_over_persona": ratio(pipeline_tps, persona["p50"]),
        "pipeline_over_persona_paired": summary(paired_ratios(session, "persona_tps")),
    }


def _turn_values(sessions: list[dict], key: str) -> list[float | None]:
    return [t["metrics"].get(key) for s in sessions for t in s["turns"]]


def window_analysis(result: dict) -> dict:
    """The window's figures over headless: over both headless sessions around it when there are two.

    The bench runs headless, the window, then headless again (``session_after``),
    so a host that speeds up or slows down over those minutes weighs on both
    sides alike; the ratios are over the two headless sessions' turns together.
    """
    gui, after = result["gui_session"], result.get("session_after")
    window = {k: summary(_turn_values([gui], k)) for k, _, _ in GUI_KEYS}
    same = same_prompts_summary(gui, window["tps"]["p50"])
    out: dict = {"window": window, "same_prompts": same}
    around = [result["session"], *([after] if after else [])]
    both = {k: summary(_turn_values(around, k)) for k, _, _ in GUI_KEYS}
    out["headless_around"] = both
    if after:
        out["headless_after"] = {k: summary(_turn_values([after], k)) for k, _, _ in GUI_KEYS}
    out["window_over_headless"] = {k: ratio(window[k]["p50"], both[k]["p50"]) for k, _, _ in GUI_KEYS}
    # Each side's turns over the engine alone on the same work, seconds apart: the host's drift
    # cancels turn by turn, and what the window itself costs the LLM remains.
    paired_headless = summary([r for s in around for r in paired_ratios(s)])["p50"]
    out["paired_tps_over_headless"] = ratio(same["pipeline_over_given"]["p50"], paired_headless)
    out["paired_headless"] = paired_headless
    return out


def gui_table(name: str, result: dict) -> list[str]:
    gui = result["analysis"].get("gui")
    if not gui:
        return []
    paint = result["gui_session"].get("window", {})
    before, after = result["analysis"]["pipeline"], gui.get("headless_after")
    sides = "headless before / after" if after else "headless"
    lines = [
        f"### The window — {name} (the same inputs through `MainWindow`, offscreen, face and HUD painting; "
        f"{paint.get('paint_fps')} face paints/s)",
        "",
        f"| metric | {sides} p50 | window p50 | window p90 | window ÷ headless |",
        "|---|--:|--:|--:|--:|",
    ]
    for key, label, unit in GUI_KEYS:
        w = gui["window"][key]
        suffix = {"ms": " (ms)", "": " (tok/s)"}.get(unit, "")
        headless = fmt(before[key]["p50"], unit) + (f" / {fmt(after[key]['p50'], unit)}" if after else "")
        lines.append(
            f"| {label}{suffix} | {headless} | {fmt(w['p50'], unit)} | "
            f"{fmt(w['p90'], unit)} | {fmt(gui['window_over_headless'][key], 'x')} |"
        )
    window_alone = gui.get("same_prompts", {}).get("pipeline_over_given", {})
    if window_alone.get("n"):
        lines.append(
            f"| each turn's TPS ÷ the engine alone on its very prompt and tokens, between turns (median) | "
            f"{fmt(gui.get('paired_headless'), 'x')} | {fmt(window_alone['p50'], 'x')} | "
            f"{fmt(window_alone['p90'], 'x')} | {fmt(gui.get('paired_tps_over_headless'), 'x')} |"
        )
    render = result["gui_session"].get("render", {})
    if render.get("available"):
        lines.append(f"| replica fps while talking (window) | | {fmt(render.get('fps_under_load'), '')} | | |")
    if after:
        lines += [
            "",
            "The headless conversation ran right before and right after the window; the ratios divide the "
            "window by both sessions' turns together, so the host's drift over those minutes weighs on both sides.",
        ]
    return [*lines, ""]


LONG_SESSION_KEYS = (
    ("asr_final_ms", "ASR final", "ms"),
    ("asr_wer", "ASR word error rate", "%"),
    ("ttft_ms", "TTFT", "ms"),
    ("tps", "TPS", ""),
    ("llm_latency_ms", "20/TPS + TTFT", "ms"),
    ("tts_first_audio_ms", "TTS first audio", "ms"),
    ("speech_end_to_first_audio_ms", "end of speech -> first audio", "ms"),
)


def long_session_summary(turns: list[dict]) -> dict:
    """The key figures over the whole long session, and over its first and last five turns."""

    def values(key: str, part: list[dict]) -> list[float | None]:
        return [t["metrics"].get(key) for t in part]

    return {
        key: {
            "all": summary(values(key, turns)),
            "first5": summary(values(key, turns[:5])),
            "last5": summary(values(key, turns[-5:])),
        }
        for key, _, _ in LONG_SESSION_KEYS
    }


def repeated_replies(turns: list[dict], words: int = 6) -> tuple[int, int]:
    """(replies opening with an earlier reply's first ``words`` words, replies): the model copying itself."""
    heads: list[str] = []
    repeats = 0
    for turn in turns:
        if not (turn.get("metrics") or {}).get("n_tokens"):
            continue  # nothing generated: a canned "say it again" or an empty turn
        head = " ".join(str(turn.get("generated") or "").lower().split()[:words])
        repeats += head in heads
        heads.append(head)
    return repeats, len(heads)


def repeats_line(turns: list[dict]) -> str:
    repeats, n = repeated_replies(turns)
    return f"Replies that open with an earlier reply's first six words (the model copying itself): {repeats} of {n}."


def long_session_table(name: str, result: dict) -> list[str]:
    long = result["analysis"].get("long_session")
    if not long:
        return []
    turns = result["long_session"]["turns"]
    lines = [
        f"### Other voices, one long session — {name} ({len(turns)} turns, every reply heard to its end)",
        "",
        "| metric | n | p50 | p90 | max | first 5 turns p50 | last 5 turns p50 |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for key, label, unit in LONG_SESSION_KEYS:
        a, f, last = long[key]["all"], long[key]["first5"], long[key]["last5"]
        suffix = {"ms": " (ms)", "": " (tok/s)"}.get(unit, "")
        lines.append(
            f"| {label}{suffix} | {a['n']} | {fmt(a['p50'], unit)} | {fmt(a['p90'], unit)} | "
            f"{fmt(a['max'], unit)} | {fmt(f['p50'], unit)} | {fmt(last['p50'], unit)} |"
        )
    return [*lines, "", repeats_line(turns), ""]
