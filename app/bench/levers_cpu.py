"""The CPU plan as a lever: whole typed turns through the real pipeline, plan OFF vs ON, interleaved.

Each sample is one turn of a fresh ``Conversation`` with the replica rendering
and a real-time speaker, the reply heard to its end: what the plan changes
(the face's idle rate while thinking, later sentences' TTS waiting for the
LLM, the face thread's priority) only shows when every stage runs at once.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.bench.levers import Lever, Rig, interleave
from app.core import events as ev

PLAN_QUESTIONS = (
    "Tell me about the moon in three sentences.",
    "What makes a good friend? Answer in three sentences.",
    "Describe a walk in the forest in three sentences.",
    "Why do we need sleep? Answer in three sentences.",
)


def lever_cpu_plan(rig: Rig) -> Lever:
    from app.replica import Replica

    lever = Lever(
        "CPU plan",
        "no plan (every stage as it comes)",
        "plan (thinking owns the cores; later TTS waits for the LLM; face niced)",
        (
            ("tps", "pipeline TPS (tok/s)"),
            ("llm_latency_ms", "20/TPS + TTFT (ms)"),
            ("first_audio_ms", "message -> first audio (ms)"),
            ("talking_fps", "face fps while talking"),
            ("underruns", "audio gaps between sentences (count)"),
        ),
    )
    face = Replica.from_assets()

    def arm(on: bool):
        def run(i: int) -> dict:
            return plan_turn(rig, face, PLAN_QUESTIONS[i % len(PLAN_QUESTIONS)], on)

        return run

    arm(True)(len(PLAN_QUESTIONS) - 1)  # warm-up, not kept: the face's and Piper's first calls are slow
    interleave(lever, rig.reps, arm(False), arm(True))
    lever.quality = "same prompts; the plan never changes tokens (tests/test_cpu_plan.py)"
    return lever


TURN_ROWS = (
    ("tps", "pipeline TPS (tok/s)"),
    ("llm_latency_ms", "20/TPS + TTFT (ms)"),
    ("first_audio_ms", "message -> first audio (ms)"),
    ("talking_fps", "face fps while talking"),
)


def lever_thread_team(rig: Rig) -> Lever:
    """A persistent ggml thread team vs a worker started per token, in whole turns with the plan on."""
    lever = Lever(
        "persistent thread team",
        "a decode worker started per token (llama-cpp-python's default)",
        "one ggml thread team for the context's life, asleep between replies",
        TURN_ROWS,
    )
    switch = getattr(rig.llm, "use_thread_team", None)
    if switch is None:
        lever.quality = "skipped: the LLM is not llama.cpp"
        return lever
    try:
        _plan_turns(rig, lever, lambda on: rig.on_llm(lambda: switch(on)))
    finally:
        rig.on_llm(lambda: switch(True))
    lever.quality = "same tokens: the team only changes which threads run the same graph (tests/test_ggml_pool.py)"
    return lever


def lever_tts_workers(rig: Rig, workers: str) -> Lever:
    """Piper's ONNX Runtime workers spinning after every run (ORT's default) vs ``workers``, in whole turns."""
    from app.compose import load_tts

    lever = Lever(
        f"Piper's workers: {workers}",
        "ONNX Runtime's default: Piper's workers keep spinning after each sentence",
        {"sleep": "they never spin", "spin-in-run": "they spin inside a synthesis and stop when it returns"}[workers],
        (*TURN_ROWS, ("tts_first_audio_ms", "TTS first audio (ms)")),
    )
    voices = {on: load_tts(rig.config, deterministic=True, workers=workers if on else "spin") for on in (False, True)}
    kept = rig.tts

    def use(on: bool) -> None:
        rig.tts = voices[on]

    try:
        _plan_turns(rig, lever, use)
    finally:
        rig.tts = kept
    lever.quality = "same audio: only how Piper's idle workers wait changes"
    return lever


def lever_tts_sleep(rig: Rig) -> Lever:
    return lever_tts_workers(rig, "sleep")


def lever_tts_spin_in_run(rig: Rig) -> Lever:
    return lever_tts_workers(rig, "spin-in-run")


def _plan_turns(rig: Rig, lever: Lever, switch: Any) -> None:
    """Warm up, then OFF/ON typed turns with the plan on; ``switch(on)`` sets the arm."""
    from app.replica import Replica

    face = Replica.from_assets()

    def arm(on: bool):
        def run(i: int) -> dict:
            switch(on)
            return plan_turn(rig, face, PLAN_QUESTIONS[i % len(PLAN_QUESTIONS)], True)

        return run

    arm(True)(len(PLAN_QUESTIONS) - 1)  # warm-up, not kept: the face's and Piper's first calls are slow
    interleave(lever, rig.reps, arm(False), arm(True))


def plan_turn(rig: Rig, face: Any, question: str, plan_on: bool) -> dict:
    """One typed turn through a fresh conversation with the face and a paced speaker; its numbers."""
    from app.core.audio_io import WavWriterSink
    from app.core.conversation import Conversation
    from app.core.history import JsonlLog

    frames: list[int] = []
    engines = _Engines(rig)
    log_dir = Path(rig.config.log_dir)
    config = replace(rig.config, cpu_plan=plan_on)
    sink = WavWriterSink(None, rig.tts.sample_rate)
    conversation = Conversation(
        config,
        engines,
        sink=sink,
        face=face,
        on_frame=lambda _f: frames.append(time.perf_counter_ns()),
        log=JsonlLog(log_dir / f"cpu-plan-{'on' if plan_on else 'off'}.jsonl"),
    )
    played: list[int] = []
    conversation.bus.subscribe(lambda e: played.append(e.t_ns) if isinstance(e, ev.AudioPlayed) else None)
    conversation.start()
    conversation.settle(30)
    turn = conversation.say(question)
    conversation.wait_idle(120)
    ended = time.perf_counter_ns()
    metrics = conversation.metrics.compute(turn)
    conversation.shutdown()
    start = played[0] if played else ended
    talking = [t for t in frames if start <= t <= ended]
    talking_s = (ended - start) / 1e9
    return {
        "tps": metrics["tps"],
        "llm_latency_ms": metrics["llm_latency_ms"],
        "first_audio_ms": metrics["speech_end_to_first_audio_ms"],
        "talking_fps": len(talking) / talking_s if talking_s > 0.5 else None,
        "tts_first_audio_ms": metrics["tts_first_audio_ms"],
        "underruns": conversation.audio_gaps,
        "n_tokens": metrics["n_tokens"],
    }


class _Engines:
    def __init__(self, rig: Rig) -> None:
        self.asr, self.llm, self.tts = rig.asr, rig.llm, rig.tts
