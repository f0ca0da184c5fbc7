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


def gui_table(name: str, result: dict) -> list[str]:
    gui = result["analysis"].get("gui")
    if not gui:
        return []
    paint = result["gui_session"].get("window", {})
    lines = [
        f"### The window — {name} (the same inputs through `MainWindow`, offscreen, face and HUD painting; "
        f"{paint.get('paint_fps')} face paints/s)",
        "",
        "| metric | headless p50 | window p50 | window p90 | window ÷ headless |",
        "|---|--:|--:|--:|--:|",
    ]
    headless = result["analysis"]["pipeline"]
    for key, label, unit in GUI_KEYS:
        w = gui["window"][key]
        suffix = {"ms": " (ms)", "": " (tok/s)"}.get(unit, "")
        lines.append(
            f"| {label}{suffix} | {fmt(headless[key]['p50'], unit)} | {fmt(w['p50'], unit)} | "
            f"{fmt(w['p90'], unit)} | {fmt(gui['window_over_headless'][key], 'x')} |"
        )
    alone = (result["analysis"].get("same_prompts") or {}).get("pipeline_over_given", {})
    window_alone = gui.get("same_prompts", {}).get("pipeline_over_given", {})
    if window_alone.get("n"):
        lines.append(
            f"| each turn's TPS ÷ the engine alone on its very prompt and tokens, between turns (median) | "
            f"{fmt(alone.get('p50'), 'x')} | {fmt(window_alone['p50'], 'x')} | {fmt(window_alone['p90'], 'x')} | "
            f"{fmt(gui.get('paired_tps_over_headless'), 'x')} |"
        )
    render = result["gui_session"].get("render", {})
    if render.get("available"):
        lines.append(f"| replica fps while talking (window) | | {fmt(render.get('fps_under_load'), '')} | | |")
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
