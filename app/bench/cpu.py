"""CPU seconds per pipeline stage, from /proc/self/task/<tid>/stat.

Python names its threads (``doppel-llm``...) but not at the OS level, so the
stage threads are found through ``Thread.native_id``.  The engines' own pools
(llama.cpp's OpenMP workers, onnxruntime's and CTranslate2's intra-op
threads) have no name at all.  Each of those is attributed to the named
thread whose CPU use, sampled every 100 ms, it follows most closely
(Pearson correlation of the increments): a pool worker is busy exactly when
the stage that drives it is.  What cannot be attributed that way (threads
that died between samples, weakly correlated ones) is reported as such.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable

import numpy as np

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
MIN_CORRELATION = 0.3

# Named threads -> the stage they belong to.
STAGES = {
    "doppel-vad": "vad",
    "doppel-asr": "asr",
    "doppel-llm": "llm",
    "doppel-openai-llm": "llm",
    "doppel-tts": "tts",
    "doppel-replica": "replica",
    "audio-source": "audio i/o",
    "audio-sink": "audio i/o",
}


def _ticks(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[11]) + int(rest[12])  # utime + stime


def thread_switches() -> dict[int, int]:
    """Context switches of every live thread (voluntary + involuntary): about how often each woke up."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{name}/status", encoding="ascii") as fh:
                out[int(name)] = sum(int(line.split()[1]) for line in fh if "ctxt_switches" in line)
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    return out


def thread_ticks() -> dict[int, int]:
    """CPU ticks of every live thread of this process."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc/self/task"):
        ticks = _ticks(f"/proc/self/task/{name}/stat")
        if ticks is not None:
            out[int(name)] = ticks
    return out


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class CpuSampler:
    """Samples every thread's CPU on a background thread between ``start`` and ``stop``."""

    # A sample reads every thread's /proc entry (~0.7 ms of CPU for ~35 threads): at 10 a second the
    # sampler took 0.7-0.9 % of a core beside the measured LLM. The engines' pools are known by id;
    # the rest are attributed by correlation, for which 2 samples a second over a session suffice.
    def __init__(self, period_s: float = 0.5, known: dict[int, str] | None = None) -> None:
        self.period_s = period_s
        self.known = dict(known or {})  # native id -> stage, found by calling each engine alone
        self.samples: list[dict[int, int]] = []
        self.names: dict[int, str] = {}  # native id -> Python thread name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)
        self._t0 = self._t1 = 0.0
        self._cpu0 = self._cpu1 = 0.0
        self._switches0: dict[int, int] = {}
        self._switches1: dict[int, int] = {}

    def start(self) -> None:
        self._t0, self._cpu0 = time.perf_counter(), process_cpu_s()
        self._switches0 = thread_switches()
        self._sample()
        self._thread.start()

    def _sample(self) -> None:
        for t in threading.enumerate():
            if t.native_id is not None:
                self.names[t.native_id] = t.name
        self.samples.append(thread_ticks())

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sample()
        self._switches1 = thread_switches()
        self._t1, self._cpu1 = time.perf_counter(), process_cpu_s()

    def report(self) -> dict:
        """CPU seconds per stage, how each unnamed thread was attributed, and the totals."""
        tids = sorted({tid for s in self.samples for tid in s})
        series = np.array([[s.get(tid, np.nan) for tid in tids] for s in self.samples], dtype=float)
        series = _carry_forward(series)
        deltas = np.nan_to_num(np.diff(series, axis=0), nan=0.0)  # ticks per sample period
        used = deltas.sum(axis=0) * TICK_S
        col = {tid: i for i, tid in enumerate(tids)}
        named = {tid: self.names[tid] for tid in tids if tid in self.names}
        stage_cpu: dict[str, float] = {}
        stage_switches: dict[str, int] = {}  # context switches: each is a thread waking or being preempted
        threads: list[dict] = []
        drivers = {tid: name for tid, name in named.items() if name in STAGES}
        for tid in tids:
            cpu = float(used[col[tid]])
            name = named.get(tid)
            if name is not None:
                stage = STAGES.get(name, "bench and other python")
                threads.append({"tid": tid, "name": name, "stage": stage, "cpu_s": round(cpu, 3)})
            elif tid in self.known and cpu > 0:
                stage = self.known[tid]
                threads.append({"tid": tid, "name": f"(native, {stage} pool)", "stage": stage, "cpu_s": round(cpu, 3)})
            else:
                stage, driver, corr = self._attribute(deltas[:, col[tid]], deltas, col, drivers)
                threads.append(
                    {
                        "tid": tid,
                        "name": f"(native, follows {driver})" if driver else "(native)",
                        "stage": stage,
                        "correlation": None if corr is None else round(corr, 2),
                        "cpu_s": round(cpu, 3),
                    }
                )
            stage_cpu[stage] = stage_cpu.get(stage, 0.0) + cpu
            threads[-1]["switches"] = self._switches1.get(tid, 0) - self._switches0.get(tid, 0)
            stage_switches[stage] = stage_switches.get(stage, 0) + max(0, threads[-1]["switches"])
        process = self._cpu1 - self._cpu0
        sampled = float(used.sum())
        stage_cpu["threads gone before sampling"] = max(0.0, process - sampled)
        wall = self._t1 - self._t0
        return {
            "method": f"per-thread utime+stime from /proc/self/task every {self.period_s * 1000:.0f} ms; "
            "unnamed native threads: engine pools found by calling each engine alone before the session, "
            f"the rest attributed to the named stage thread they correlate with best (r >= {MIN_CORRELATION:.1f})",
            "wall_s": round(wall, 2),
            "process_cpu_s": round(process, 2),
            "cpu_utilisation": round(process / wall / (os.cpu_count() or 1), 3) if wall > 0 else None,
            "stage_cpu_s": {k: round(v, 2) for k, v in sorted(stage_cpu.items(), key=lambda kv: -kv[1])},
            "stage_switches_per_s": {k: round(v / wall, 1) for k, v in stage_switches.items()} if wall > 0 else {},
            "threads": sorted(threads, key=lambda t: -t["cpu_s"]),
        }

    @staticmethod
    def _attribute(
        own: np.ndarray, deltas: np.ndarray, col: dict[int, int], drivers: dict[int, str]
    ) -> tuple[str, str | None, float | None]:
        if own.sum() == 0:
            return "idle native threads", None, None
        best: tuple[float, str] | None = None
        for tid, name in drivers.items():
            other = deltas[:, col[tid]]
            if other.std() == 0 or own.std() == 0:
                continue
            r = float(np.corrcoef(own, other)[0, 1])
            if best is None or r > best[0]:
                best = (r, name)
        if best is None or best[0] < MIN_CORRELATION:
            return "unattributed native threads", None, None if best is None else best[0]
        return STAGES[best[1]], best[1], best[0]


def engine_pools(calls: dict[str, Callable[[], object]]) -> dict[int, str]:
    """Run each engine alone and note which unnamed threads did its work: native id -> stage.

    The engines' own pools (CTranslate2, onnxruntime) outlive the call, so the
    session's threads can be recognised; OpenMP teams are per calling thread
    and are left to the correlation.  Doubles as the warm-up.
    """
    python_ids = {t.native_id for t in threading.enumerate()}
    gained: dict[int, tuple[int, str]] = {}
    for stage, call in calls.items():
        before = thread_ticks()
        call()
        after = thread_ticks()
        for tid, ticks in after.items():
            delta = ticks - before.get(tid, 0)
            if tid not in python_ids and delta > 0 and delta > gained.get(tid, (0, ""))[0]:
                gained[tid] = (delta, stage)
    return {tid: stage for tid, (_, stage) in gained.items()}


def _carry_forward(series: np.ndarray) -> np.ndarray:
    """Fill gaps: a thread born after the first sample started from 0 ticks; a gone one keeps its last value."""
    out = series.copy()
    for j in range(out.shape[1]):
        column = out[:, j]
        seen = np.flatnonzero(~np.isnan(column))
        if not len(seen):
            continue
        column[: seen[0]] = 0.0
        for i in range(seen[0] + 1, len(column)):
            if np.isnan(column[i]):
                column[i] = column[i - 1]
    return out
