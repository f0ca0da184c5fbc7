"""`doppel bench --turns`: the turn-taking set through the real pipeline, turn model vs the fixed window.

Every case runs in a fresh conversation (the same loaded engines) fed at
real-time pace from files, with a paced speaker: complete questions,
hesitations (an unfinished opening, 0.4-1.2 s of silence, the rest),
backchannels and interruptions spoken while the replica answers a lead
question.  Both arms run in the same process, case by case interleaved, so
the machine's speed swings hit them alike.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.questions import RATE, ensure_audio, load_audio
from app.bench.turn_set import TURN_CASES, TurnCase, case_audio, clips
from app.config import Config
from app.core import events as ev
from app.core.audio_io import FileSource, SourceItem, WavWriterSink
from app.core.history import JsonlLog

ARMS = {"fixed 250 ms window": {"turn_cues": "off", "backchannels_resume": False}, "turn model": {}}
HEARD_BEFORE_INTERJECTING_S = 1.0  # a backchannel or interruption starts this long into the reply
CASE_TIMEOUT_S = 40.0
LAST_VOICE_SLACK_NS = 400_000_000  # the VAD's voice end may fall this far before the clip's last sample


class _Events:
    def __init__(self) -> None:
        self.items: list[ev.Event] = []

    def __call__(self, event: ev.Event) -> None:
        self.items.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in list(self.items) if isinstance(e, kind)]


@dataclass
class CaseResult:
    case: str
    kind: str
    arm: str
    eos_to_audio_ms: float | None = None  # end of the user's (last) speech -> the replica heard again
    commit_ms: float | None = None  # end of speech -> the turn model's verdict (complete questions)
    whole: bool | None = None  # hesitation: one reply, after the rest was spoken
    reply_stopped: bool | None = None  # backchannel: the reply was cut
    stop_ms: float | None = None  # interruption: the user's voice onset -> the replica silent
    paused_ms: float | None = None  # backchannel: how long the reply was paused


def _run_case(case: TurnCase, audio: dict[str, np.ndarray], config: Config, engines: Any, arm: str) -> CaseResult:
    from app.core.conversation import Conversation

    events = _Events()
    holder: dict[str, Any] = {}

    def heard_a_while() -> bool:
        played = events.of(ev.AudioPlayed)
        return bool(played) and time.perf_counter_ns() - played[0].t_ns > HEARD_BEFORE_INTERJECTING_S * 1e9

    if case.lead is None:
        items = [SourceItem(case_audio(case, audio))]
    else:
        items = [SourceItem(audio[case.lead.id]), SourceItem(case_audio(case, audio), wait_for=heard_a_while)]
    source = FileSource(items)
    sink = WavWriterSink(None, engines.tts.sample_rate)
    with tempfile.TemporaryDirectory() as tmp:
        conversation = Conversation(config, engines, source=source, sink=sink, log=JsonlLog(Path(tmp) / "t.jsonl"))
        holder["c"] = conversation
        conversation.bus.subscribe(events)
        conversation.start()
        deadline = time.monotonic() + CASE_TIMEOUT_S
        while not source.finished.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        _wait_for_reply(events, source.voice_spans_ns[-1][1], deadline)
        conversation.interrupt("bench: case over")
        conversation.shutdown(timeout=2.0)
    return _score(case, arm, events, source, len(audio[case.parts[0].id]) / RATE)


def _wait_for_reply(events: _Events, spoken_until_ns: int, deadline: float) -> None:
    """Until the utterance that ends the input (at ``spoken_until_ns``) has had its answer or its resumed reply.

    Only the VAD's end of the input's last voice counts: a reply to an earlier piece of the
    same input (a hesitation's opening, or the first sentence of its rest) is not the answer.
    """
    while time.monotonic() < deadline:
        ended = [e for e in events.of(ev.SpeechEnded) if e.voice_end_ns > spoken_until_ns - LAST_VOICE_SLACK_NS]
        last_end = ended[-1].voice_end_ns if ended else None
        answers = [e.t_ns for e in (*events.of(ev.AudioPlayed), *events.of(ev.ReplyResumed))]
        if last_end is not None and any(t > last_end for t in answers):
            time.sleep(0.3)
            return
        time.sleep(0.05)


def _score(case: TurnCase, arm: str, events: _Events, source: FileSource, opening_s: float) -> CaseResult:
    result = CaseResult(case.id, case.kind, arm)
    spans = source.voice_spans_ns
    user_start, user_end = spans[-1] if spans else (0, 0)
    ended = [e for e in events.of(ev.SpeechEnded) if e.voice_end_ns >= user_start - 50_000_000]
    voice_end = ended[-1].voice_end_ns if ended else user_end
    played = events.of(ev.AudioPlayed)
    resumed = events.of(ev.ReplyResumed)
    heard_again = sorted(t for t in [e.t_ns for e in played] + [e.t_ns for e in resumed] if t > voice_end)
    if heard_again:
        result.eos_to_audio_ms = (heard_again[0] - voice_end) / 1e6
    if case.kind == "complete":
        judged = events.of(ev.TurnJudged)
        if judged:
            result.commit_ms = (judged[-1].t_ns - voice_end) / 1e6
    elif case.kind == "hesitation":
        rest_start = user_start + int((opening_s + case.pause_s) * 1e9)
        replied_turns = {e.turn_id for e in played}
        result.whole = len(replied_turns) == 1 and all(e.t_ns > rest_start for e in played)
    elif case.kind == "backchannel":
        barge = events.of(ev.BargeIn)
        result.reply_stopped = bool(barge) or not resumed
        if resumed:
            result.paused_ms = resumed[0].paused_ms
    else:
        barge = events.of(ev.BargeIn)
        if barge:
            result.stop_ms = (barge[0].silent_ns - user_start) / 1e6
    return result


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q * 100))


def summarize(results: list[CaseResult]) -> list[dict[str, Any]]:
    rows = []
    for arm in ARMS:
        mine = [r for r in results if r.arm == arm]

        def of(kind: str, rs: list[CaseResult] = mine) -> list[CaseResult]:
            return [r for r in rs if r.kind == kind]

        hes, back, inter, comp = of("hesitation"), of("backchannel"), of("interruption"), of("complete")
        eos = [r.eos_to_audio_ms for r in mine if r.eos_to_audio_ms is not None]
        stops = [r.stop_ms for r in inter if r.stop_ms is not None]
        row: dict[str, Any] = {
            "arm": arm,
            "hesitations kept whole": f"{sum(bool(r.whole) for r in hes)}/{len(hes)}",
            "backchannels that stopped the reply": f"{sum(bool(r.reply_stopped) for r in back)}/{len(back)}",
            "backchannel pause p50 ms": _round(statistics.median([r.paused_ms for r in back if r.paused_ms]))
            if any(r.paused_ms for r in back)
            else None,
            "interruption stop p50/p90 ms": f"{_fmt(_quantile(stops, 0.5))}/{_fmt(_quantile(stops, 0.9))}",
            "complete: commit p50 ms": _fmt(_quantile([r.commit_ms for r in comp if r.commit_ms is not None], 0.5)),
        }
        for kind, rs in (("complete", comp), ("hesitation", hes), ("backchannel", back), ("interruption", inter)):
            values = [r.eos_to_audio_ms for r in rs if r.eos_to_audio_ms is not None]
            row[f"{kind}: end of speech -> audio p50/p90 ms"] = (
                f"{_fmt(_quantile(values, 0.5))}/{_fmt(_quantile(values, 0.9))} (n={len(values)})"
            )
        row["all inputs p90 ms"] = _fmt(_quantile(eos, 0.9))
        rows.append(row)
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _round(value: float) -> float:
    return round(value, 0)


def run_turn_bench(engines: Any, config: Config, out_dir: Path, quick: bool = False, progress=print) -> dict:
    """Both arms, case by case interleaved; returns the JSON-able document (rows, per-case results)."""
    paths = ensure_audio(list(clips()), out_dir / "questions")
    audio = {qid: load_audio(p) for qid, p in paths.items()}
    cases = [c for i, c in enumerate(TURN_CASES) if not quick or i % 4 == 0]
    results: list[CaseResult] = []
    for n, case in enumerate(cases, 1):
        for arm, overrides in ARMS.items():
            progress(f"turn-taking {n}/{len(cases)} {case.id} ({case.kind}) — {arm}")
            results.append(_run_case(case, audio, replace(config, **overrides), engines, arm))
    progress("turn cues on the set, offline (the recogniser's text, the LLM's P(end), Smart Turn)")
    cues = _cue_rows(engines, config, audio)
    return {"rows": summarize(results), "cues": cues, "cases": [r.__dict__ for r in results]}


def _cue_rows(engines: Any, config: Config, audio: dict[str, np.ndarray]) -> list[dict[str, object]]:
    from app.bench.turn_cues import cue_table, sample_cues
    from app.compose import load_turn_end

    samples = sample_cues(engines.asr, load_turn_end(config), audio, engines.llm, config.system_prompt)
    return cue_table(samples, llm_threshold=config.turn_llm_threshold)


def to_markdown(doc: dict) -> str:
    """The table for docs/bench/turns.md: one column per arm."""
    rows = doc["rows"]
    keys = [k for k in rows[0] if k != "arm"]
    lines = ["| | " + " | ".join(r["arm"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    lines += [f"| {k} | " + " | ".join(str(r[k]) for r in rows) + " |" for k in keys]
    cues = doc.get("cues") or []
    if cues:
        lines += [
            "",
            "| cue | " + " | ".join(k for k in cues[0] if k != "cue") + " |",
            "|---|" + "---|" * (len(cues[0]) - 1),
        ]
        lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in cues]
    return "\n".join(lines) + "\n"


def run_cli(config: Config, out_dir: Path, quick: bool) -> int:
    import json
    import sys

    from app.compose import load_engines

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    say("Loading models…")
    engines = load_engines(replace(config, llm_backend="local"))
    doc = run_turn_bench(engines, config, out_dir, quick, say)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "turns.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    table = to_markdown(doc)
    (out_dir / "turns.md").write_text(table, encoding="utf-8")
    print(table)
    return 0
