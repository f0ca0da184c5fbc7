"""The report's PNG, drawn with OpenCV: the median turn's waterfall and two comparisons.

OpenCV is already a dependency (the replica uses it); Hershey fonts are
ASCII-only, hence "->" in the labels.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from app.bench import report

W = 1400
FONT = cv2.FONT_HERSHEY_SIMPLEX
INK, GRID, MUTED = (40, 40, 40), (225, 225, 225), (120, 120, 120)
COLORS = {  # BGR
    "vad": (180, 180, 180),
    "asr": (200, 140, 60),
    "llm": (60, 150, 230),
    "llm_light": (170, 210, 245),
    "tts": (80, 170, 90),
    "out": (150, 110, 190),
    "face": (70, 90, 200),
}


def _text(img: np.ndarray, s: str, x: int, y: int, scale: float = 0.5, color=INK, bold: bool = False) -> None:
    cv2.putText(img, s, (x, y), FONT, scale, color, 2 if bold else 1, cv2.LINE_AA)


def _text_right(img: np.ndarray, s: str, x: int, y: int, scale: float = 0.5, color=INK) -> None:
    (w, _), _ = cv2.getTextSize(s, FONT, scale, 1)
    _text(img, s, x - w, y, scale, color)


def _nice_step(span: float) -> float:
    raw = span / 6
    mag = 10 ** np.floor(np.log10(max(raw, 1e-9)))
    return float(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw))


def _axis(img: np.ndarray, x0: int, x1: int, y0: int, y1: int, vmax: float, unit: str = "ms") -> float:
    """Vertical grid lines with labels under the plot; returns pixels per unit."""
    scale = (x1 - x0) / vmax
    step = _nice_step(vmax)
    v = 0.0
    while v <= vmax + 1e-9:
        x = int(x0 + v * scale)
        cv2.line(img, (x, y0), (x, y1), GRID, 1)
        _text(img, f"{v:g}", x - 8, y1 + 16, 0.4, MUTED)
        v += step
    _text(img, unit, x1 + 26, y1 + 16, 0.4, MUTED)
    return scale


def _waterfall(img: np.ndarray, doc: dict, top: int) -> None:
    name, result = next(iter(doc["backends"].items()))
    turn = report.median_turn(result)
    _text(img, f"Median turn ({name} LLM): from the end of the user's speech", 30, top, 0.7, bold=True)
    if turn is None:
        _text(img, "no complete turn to show", 60, top + 40)
        return
    marks = {"voice_end": 0.0, **turn["marks_ms"]}
    e2e = turn["metrics"].get("speech_end_to_first_audio_ms")
    _text(
        img,
        f'input {turn["input"]} "{turn["asked"][:60]}" -> first audio {e2e:.0f} ms (the median of '
        f"{result['analysis']['pipeline']['speech_end_to_first_audio_ms']['n']} turns)",
        30,
        top + 24,
        0.45,
        MUTED,
    )
    rows = [(label, marks[a], marks[b], color) for label, a, b, color in report.WATERFALL if a in marks and b in marks]
    x0, x1, y = 290, W - 120, top + 50
    vmax = max(b for _, _, b, _ in rows) * 1.08
    scale = _axis(img, x0, x1, y - 6, y + 30 * len(rows) + 4, vmax)
    for label, a, b, color in rows:
        _text_right(img, label, x0 - 10, y + 17)
        xa, xb = int(x0 + a * scale), max(int(x0 + b * scale), int(x0 + a * scale) + 2)
        cv2.rectangle(img, (xa, y + 4), (xb, y + 24), COLORS[color], -1)
        _text(img, f"{b - a:.0f}", xb + 6, y + 19, 0.42, MUTED)
        y += 30
    for key, label in (("first_audio_played", "first audio"), ("first_replica_frame", "first frame")):
        if key in marks:
            x = int(x0 + marks[key] * scale)
            cv2.line(img, (x, top + 44), (x, y + 4), (0, 0, 200), 1, cv2.LINE_AA)
            if key == "first_audio_played":  # left of its line; the frame's label goes right of its own
                _text_right(img, f"{label} {marks[key]:.0f} ms", x - 4, top + 42, 0.42)
            else:
                _text(img, f"{label} {marks[key]:.0f} ms", x + 4, top + 42, 0.42)


def _hbars(
    img: np.ndarray,
    title: str,
    rows: list[tuple[str, list[tuple[float, tuple[int, int, int]]], float | None, str]],
    box: tuple[int, int, int, int],
    unit: str = "ms",
) -> None:
    """Stacked horizontal bars: (label, [(length, color)...], optional p90 tick, value text)."""
    left, top, right, _bottom = box
    _text(img, title, left, top, 0.6, bold=True)
    x0, x1, y = left + 230, right - 90, top + 20
    vmax = max(max(sum(v for v, _ in segs), tick or 0.0) for _, segs, tick, _ in rows) * 1.05 or 1.0
    scale = _axis(img, x0, x1, y - 4, y + 28 * len(rows) + 2, vmax, unit)
    for label, segs, tick, value in rows:
        _text_right(img, label, x0 - 8, y + 16, 0.45)
        x = float(x0)
        for length, color in segs:
            cv2.rectangle(img, (int(x), y + 4), (max(int(x + length * scale), int(x) + 1), y + 22), color, -1)
            x += length * scale
        if tick is not None:
            xt = int(x0 + tick * scale)
            cv2.line(img, (xt, y + 2), (xt, y + 24), INK, 2)
        _text(img, value, int(max(x, x0 + (tick or 0) * scale)) + 8, y + 18, 0.42, MUTED)
        y += 28


def _e2e_rows(doc: dict) -> list:
    rows = []
    for name, result in doc["backends"].items():
        a = result["analysis"]
        for label, src, key, color in (
            ("pipeline", "pipeline", "speech_end_to_first_audio_ms", COLORS["llm"]),
            ("raw engines (limit)", "direct", "raw_e2e_audio_ms", COLORS["tts"]),
            ("naive chain", "direct", "naive_e2e_audio_ms", COLORS["vad"]),
        ):
            s = a[src][key]
            if s["p50"] is not None:
                text = f"{s['p50']:.0f} (p90 {s['p90']:.0f})"
                rows.append((f"{name}: {label}", [(s["p50"], color)], s["p90"], text))
    return rows


def _seed_rows(doc: dict) -> list:
    rows = []
    dark, light = COLORS["out"], (215, 195, 230)
    for row in doc["seed_reference"]:
        rest = row["llm_latency_ms"] - row["ttft_ms"]
        rows.append((row["name"], [(row["ttft_ms"], dark), (rest, light)], None, f"{row['llm_latency_ms']:.0f}"))
    for name, result in doc["backends"].items():
        for label, src, key in (
            (f"Doppel {name} (HUD TTFT)", "pipeline", "ttft_ms"),
            (f"Doppel {name} (from transcript)", "pipeline", "effective_ttft_ms"),
            (f"{name} engine alone", "direct", "ttft_ms"),
        ):
            a = result["analysis"][src]
            ttft, tps = a[key]["p50"], a["tps"]["p50"]
            lat = ttft + 20_000.0 / tps if ttft is not None and tps else None
            if ttft is not None and lat is not None:
                segs = [(ttft, COLORS["llm"]), (max(0.0, lat - ttft), COLORS["llm_light"])]
                rows.append((label, segs, None, f"{lat:.0f}"))
    return rows


def draw(doc: dict, path: Path) -> None:
    """Write the chart; white background, one figure of three panels."""
    cpu_rows = _cpu_rows(doc)
    h = 800 + 28 * len(cpu_rows) + 40
    img = np.full((h, W, 3), 255, dtype=np.uint8)
    _text(img, f"Doppel bench - {doc['run']['started']} - {doc['run']['mode']} run", 30, 34, 0.8, bold=True)
    machine = doc["machine"]
    _text(img, f"{machine['cpu']}, {machine['cores']} cores, load {machine['loadavg_start']}", 30, 58, 0.45, MUTED)
    _waterfall(img, doc, 100)
    e2e = _e2e_rows(doc)
    top = 480
    _hbars(img, "End of speech -> first audio (ms): p50 bar, p90 tick", e2e, (30, top, W // 2 - 20, h))
    _hbars(
        img,
        "20/TPS + TTFT (ms): TTFT dark, 20/TPS light (p50)",
        _seed_rows(doc),
        (W // 2 + 10, top, W - 20, h),
    )
    _hbars(img, "CPU seconds per stage during the conversation", cpu_rows, (30, 740, W - 380, h), "s")
    _legend(img, h - 24)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def _cpu_rows(doc: dict) -> list:
    palette = {"llm": "llm", "tts": "tts", "asr": "asr", "vad": "vad", "replica": "face", "audio i/o": "out"}
    rows = []
    for name, result in doc["backends"].items():
        cpu = result["session"]["cpu"]
        for stage, secs in list(cpu["stage_cpu_s"].items())[:7]:
            color = COLORS[palette.get(stage, "vad")] if stage in palette else (205, 205, 205)
            share = secs / (cpu["process_cpu_s"] or 1.0) * 100
            rows.append((f"{name}: {stage}"[:34], [(secs, color)], None, f"{secs:.1f} s ({share:.0f} %)"))
    return rows


def _legend(img: np.ndarray, y: int) -> None:
    x = 30
    for label, key in (("VAD", "vad"), ("ASR", "asr"), ("LLM", "llm"), ("TTS", "tts"), ("audio out", "out")):
        cv2.rectangle(img, (x, y - 11), (x + 14, y + 1), COLORS[key], -1)
        _text(img, label, x + 20, y, 0.45)
        x += 110
    cv2.rectangle(img, (x, y - 11), (x + 14, y + 1), COLORS["face"], -1)
    _text(img, "replica", x + 20, y, 0.45)
