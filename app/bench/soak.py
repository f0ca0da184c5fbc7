"""The soak: hundreds of mixed turns through one headless conversation, watching for leaks.

``python -m app.bench.soak --turns 200`` loads the bundled models and runs a
cycle of five turns until the log holds the asked number: a spoken question,
a typed message, a long spoken request barged in on by a spoken interrupter
(two turns), and a typed message stopped with Esc as soon as it is heard.
Speech comes from the bench's question WAVs through ``FileSource`` at
real-time pace, the speaker is a paced ``WavWriterSink``.

What it watches: resident memory (after warm-up and at the end, plus the
slope of a line fitted through every turn after warm-up), live threads and
open file descriptors (before start, after warm-up, at the end, after
shutdown), and the JSONL log (one complete record per finished turn).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.bench.questions import BARGE_INS, QUESTIONS, ensure_audio, load_audio
from app.config import Config
from app.core import events as ev
from app.core.audio_io import FileSource, SourceItem, WavWriterSink
from app.core.history import JsonlLog, read_log
from app.core.jobs import EngineSet

QUESTION_DIR = Path(__file__).resolve().parents[2] / "docs" / "bench" / "questions"
TYPED = (
    "What is your favourite season?",
    "Can you say hello to my friend? 😀",
    "Tell me about <b>bold</b> & plain text.",
    "שלום! How do you say peace in Hebrew?",
    "Name a colour.",
    "Is 2 + 2 = 4?",
)
CYCLE = ("spoken", "typed", "barge_in", "stopped")  # barge_in makes two turns: five turns a cycle
RECORD_KEYS = ("turn_id", "user", "reply", "generated", "interrupted", "cancel_reason", "error", "backend", "metrics")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SoakPlan:
    turns: int = 200
    warmup_turns: int = 20
    turn_timeout_s: float = 60.0
    # A barge-in or Esc comes this long after the reply is first heard: early enough that a short
    # reply (SmolLM sometimes settles into five-token answers) is still playing.
    heard_before_cut_s: float = 0.3
    max_reply_tokens: int = 32  # short replies keep 200 turns near 20 minutes


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def snapshot(turns_done: int) -> dict:
    return {
        "turns": turns_done,
        "rss_mb": round(rss_mb(), 1),
        "python_threads": threading.active_count(),
        "os_threads": os_threads(),
        "fds": open_fds(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "t": time.monotonic(),
    }


class _Watch:
    """Bus subscriber keeping only what the driver waits on (holding every event would itself leak)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.ended: list[tuple[int, bool]] = []  # (turn id, interrupted)
        self.heard_at: dict[int, int] = {}  # turn id -> first audio played (ns); dropped when the turn ends
        self.latest_turn = 0
        self.errors: list[str] = []
        self.barge_ins = 0

    def __call__(self, event: ev.Event) -> None:
        with self.cond:
            if isinstance(event, ev.SpeechStarted | ev.UserText):
                self.latest_turn = max(self.latest_turn, event.turn_id)
            elif isinstance(event, ev.AudioPlayed):
                self.heard_at.setdefault(event.turn_id, event.t_ns)
            elif isinstance(event, ev.BargeIn):
                self.barge_ins += 1
            elif isinstance(event, ev.ErrorEvent):
                self.errors.append(f"{event.source}: {event.message}"[:300])
            elif isinstance(event, ev.TurnEnded):
                self.ended.append((event.turn_id, event.interrupted))
                self.heard_at.pop(event.turn_id, None)
            else:
                return
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Until ``predicate()``; polled too, since "heard for a while" turns true with no event."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.05))
            return True

    def heard_for(self, turn_id: int, seconds: float) -> bool:
        t = self.heard_at.get(turn_id)
        return t is not None and ev.now_ns() - t >= seconds * 1e9


def _spoken_items(n_cycles: int, audio: dict[str, np.ndarray]) -> tuple[list[SourceItem], list[threading.Event]]:
    """Per cycle: a question, a long request and its interrupter, each released by the driver."""
    items, releases = [], []
    for c in range(n_cycles):
        long, interrupter = BARGE_INS[c % len(BARGE_INS)]
        for qid, gap in ((QUESTIONS[c % len(QUESTIONS)].id, 0.6), (long.id, 0.6), (interrupter.id, 0.0)):
            release = threading.Event()
            items.append(SourceItem(audio[qid], wait_for=release.is_set, delay_s=gap, label=qid))
            releases.append(release)
    return items, releases


def run_soak(
    engines: EngineSet,
    config: Config,
    out_dir: Path,
    plan: SoakPlan | None = None,
    *,
    face: object | None = None,
    progress: Progress = lambda _msg: None,
) -> dict:
    """Run the soak on loaded engines; returns the record (also written to ``out_dir/soak.json``)."""
    from app.core.conversation import Conversation

    plan = plan or SoakPlan()
    out_dir.mkdir(parents=True, exist_ok=True)
    config = replace(config, max_reply_tokens=plan.max_reply_tokens)
    wanted = [*QUESTIONS, *(q for pair in BARGE_INS for q in pair)]
    audio = {qid: load_audio(path) for qid, path in ensure_audio(wanted, QUESTION_DIR).items()}
    n_cycles = plan.turns // 5 * 2 + 2  # spare inputs in case some turns are lost
    items, releases = _spoken_items(n_cycles, audio)
    source = FileSource(items)
    log_path = out_dir / "soak.jsonl"
    log_path.unlink(missing_ok=True)
    log_errors: list[str] = []
    log = JsonlLog(log_path, on_error=log_errors.append)
    watch = _Watch()
    before = snapshot(0)
    threads_before = {t.ident for t in threading.enumerate()}
    conversation = Conversation(
        config,
        engines,
        source=source,
        sink=WavWriterSink(None, engines.tts.sample_rate),
        face=face,  # type: ignore[arg-type]
        on_frame=(lambda _frame: None) if face is not None else None,
        log=log,
    )
    conversation.bus.subscribe(watch)
    samples: list[dict] = []
    stuck: list[str] = []
    kinds: dict[str, int] = {}
    spoken = iter(releases)
    started = time.monotonic()
    conversation.start()

    def done() -> int:
        return len(watch.ended)

    def wait_turns(n: int, what: str) -> None:
        if not watch.wait(lambda: done() >= n, plan.turn_timeout_s):
            stuck.append(f"{what} (after {done()} turns)")
            conversation.interrupt("soak: timeout")
            watch.wait(lambda: done() >= n, 10.0)
        conversation.wait_idle(10.0)

    def wait_heard(turn_of: Callable[[], int], n_before: int) -> None:
        """Until the new turn's reply was heard a while (or it ended without a sound)."""
        watch.wait(
            lambda: turn_of() > 0 and (watch.heard_for(turn_of(), plan.heard_before_cut_s) or done() > n_before),
            plan.turn_timeout_s,
        )

    try:
        step = 0
        while done() < plan.turns:
            kind = CYCLE[step % len(CYCLE)]
            n = done()
            latest = watch.latest_turn
            if kind == "spoken":
                next(spoken).set()
                wait_turns(n + 1, kind)
            elif kind == "typed":
                conversation.say(TYPED[step % len(TYPED)])
                wait_turns(n + 1, kind)
            elif kind == "barge_in":
                next(spoken).set()
                wait_heard(lambda latest=latest: watch.latest_turn if watch.latest_turn > latest else 0, n)
                next(spoken).set()  # the interrupter: a barge-in, then a turn of its own
                wait_turns(n + 2, kind)
            else:
                turn_id = conversation.say(TYPED[step % len(TYPED)])
                wait_heard(lambda turn_id=turn_id: turn_id, n)
                conversation.interrupt("soak: Esc")
                wait_turns(n + 1, kind)
            kinds[kind] = kinds.get(kind, 0) + 1
            step += 1
            conversation.settle(10.0)  # sample between turns, as a user's pause would find it
            samples.append(snapshot(done()))
            if step % 10 == 0:
                s = samples[-1]
                progress(f"  {s['turns']} turns, RSS {s['rss_mb']} MB, {s['os_threads']} threads, {s['fds']} fds")
                partial = {
                    "partial": True,
                    "stuck": stuck,
                    "samples": [{k: v for k, v in x.items() if k != "t"} for x in samples],
                }
                (out_dir / "soak.json").write_text(json.dumps(partial), encoding="utf-8")  # if the run is cut short
    finally:
        conversation.settle(10.0)  # the end sample is taken like every other: between turns
        at_end = snapshot(done())
        clean = conversation.shutdown(timeout=3.0)
        source.stop()
    wall_s = time.monotonic() - started
    time.sleep(0.3)  # let daemon pacers observe their stop flags
    after = snapshot(done())
    leftover = sorted(t.name for t in threading.enumerate() if t.ident not in threads_before and t.is_alive())
    record = _record(plan, samples, before, at_end, after, wall_s, clean, leftover, log_path, watch)
    record.update(kinds=kinds, stuck=stuck, log_write_errors=log_errors, replica=face is not None)
    record["max_reply_tokens"] = getattr(engines.llm, "max_tokens", config.max_reply_tokens)
    (out_dir / "soak.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    (out_dir / "soak.md").write_text(report_md(record), encoding="utf-8")
    return record


def _record(
    plan: SoakPlan,
    samples: list[dict],
    before: dict,
    at_end: dict,
    after: dict,
    wall_s: float,
    clean: bool,
    leftover: list[str],
    log_path: Path,
    watch: _Watch,
) -> dict:
    warm = next((s for s in samples if s["turns"] >= plan.warmup_turns), samples[0] if samples else at_end)
    later = [s for s in samples if s["turns"] >= warm["turns"]]
    slope = None
    if len(later) >= 3:
        x = np.array([s["turns"] for s in later], dtype=float)
        y = np.array([s["rss_mb"] for s in later], dtype=float)
        if np.ptp(x) > 0:
            slope = round(float(np.polyfit(x, y, 1)[0]) * 100, 2)
    half = next((s for s in samples if s["turns"] >= at_end["turns"] // 2), warm)
    records = read_log(log_path)
    lines = [line for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ended_ids = [t for t, _ in watch.ended]
    complete = [r for r in records if all(k in r for k in RECORD_KEYS)]
    return {
        "turns_asked": plan.turns,
        "turns_ended": len(watch.ended),
        "interrupted": sum(1 for _, i in watch.ended if i),
        "barge_ins": watch.barge_ins,
        "wall_s": round(wall_s, 1),
        "s_per_turn": round(wall_s / max(1, len(watch.ended)), 2),
        "clean_shutdown": clean,
        "memory": {
            "rss_start_mb": before["rss_mb"],
            "rss_warm_mb": warm["rss_mb"],
            "warm_after_turns": warm["turns"],
            "rss_end_mb": at_end["rss_mb"],
            "growth_after_warmup_mb": round(at_end["rss_mb"] - warm["rss_mb"], 1),
            "slope_mb_per_100_turns": slope,
            # A step (an allocator sized for the largest input so far) stops; a leak goes on in the second half.
            "growth_second_half_mb": round(at_end["rss_mb"] - half["rss_mb"], 1),
            "second_half_from_turn": half["turns"],
            "rss_max_mb": max((s["rss_mb"] for s in samples), default=None),
        },
        "threads": {
            "before": before["os_threads"],
            "warm": warm["os_threads"],
            "end": at_end["os_threads"],
            "after_shutdown": after["os_threads"],
            "python_before": before["python_threads"],
            "python_after_shutdown": after["python_threads"],
            "leftover": leftover,
        },
        "fds": {"before": before["fds"], "warm": warm["fds"], "end": at_end["fds"], "after_shutdown": after["fds"]},
        "log": {
            "path": str(log_path),
            "lines": len(lines),
            "records": len(records),
            "complete_records": len(complete),
            "turn_ids_match": sorted(r["turn_id"] for r in records) == sorted(ended_ids),
        },
        "load_avg": {"start": before["load_avg"], "end": at_end["load_avg"]},
        "errors": watch.errors[:20],
        "samples": [{k: v for k, v in s.items() if k != "t"} for s in samples],
    }


def report_md(r: dict) -> str:
    m, t, f, lg = r["memory"], r["threads"], r["fds"], r["log"]
    rows = [
        ("turns (ended / asked)", f"{r['turns_ended']} / {r['turns_asked']}"),
        ("kinds (steps)", ", ".join(f"{k} {v}" for k, v in r["kinds"].items())),
        ("interrupted turns / barge-ins", f"{r['interrupted']} / {r['barge_ins']}"),
        ("duration", f"{r['wall_s']:.0f} s ({r['s_per_turn']} s a turn)"),
        ("RSS at start", f"{m['rss_start_mb']} MB"),
        (f"RSS after warm-up (turn {m['warm_after_turns']})", f"{m['rss_warm_mb']} MB"),
        ("RSS at the end", f"{m['rss_end_mb']} MB (max {m['rss_max_mb']} MB)"),
        ("growth after warm-up", f"{m['growth_after_warmup_mb']} MB (limit 50 MB)"),
        ("trend after warm-up", f"{m['slope_mb_per_100_turns']} MB per 100 turns"),
        (f"growth in the second half (from turn {m['second_half_from_turn']})", f"{m['growth_second_half_mb']} MB"),
        (
            "OS threads: before / warm / end / after shutdown",
            f"{t['before']} / {t['warm']} / {t['end']} / {t['after_shutdown']}",
        ),
        ("threads left after shutdown", ", ".join(t["leftover"]) or "none"),
        (
            "open fds: before / warm / end / after shutdown",
            f"{f['before']} / {f['warm']} / {f['end']} / {f['after_shutdown']}",
        ),
        (
            "log lines / complete records",
            f"{lg['lines']} / {lg['complete_records']} (ids match turns: {lg['turn_ids_match']})",
        ),
        ("clean shutdown", str(r["clean_shutdown"])),
        ("load average start → end", f"{r['load_avg']['start']} → {r['load_avg']['end']}"),
        ("turns stuck past the timeout", str(len(r["stuck"]))),
        ("errors reported", str(len(r["errors"]))),
    ]
    body = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"| measure | value |\n|---|---|\n{body}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak: many mixed turns, watching memory, threads, fds and the log.")
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("soak-out"))
    parser.add_argument("--no-face", dest="face", action="store_false", help="without the replica")
    args = parser.parse_args(argv)
    from app.compose import load_engines

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    plan = SoakPlan(turns=args.turns, warmup_turns=args.warmup)
    config = Config(log_dir=str(args.out), max_reply_tokens=plan.max_reply_tokens)
    say("Loading models…")
    engines = load_engines(config)
    face = None
    if args.face:
        from app.replica import Replica

        face = Replica.from_assets()
    record = run_soak(engines, config, args.out, plan, face=face, progress=say)
    print(report_md(record))
    ok = (
        record["memory"]["growth_after_warmup_mb"] <= 50
        and not record["threads"]["leftover"]
        and record["log"]["complete_records"] == record["turns_ended"] >= args.turns
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
