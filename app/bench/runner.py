"""The bench run: inputs, one session and one pass of direct calls per LLM backend, the report.

With ``gui`` the window's session follows, then the headless one again, so the
window is compared with the sessions on both sides of it; with ``long_session``
a long conversation in other voices comes last. ``run_bench`` takes loaded
``Engines`` so the test suite can pass the models it already holds; the
command line loads them itself.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from app.bench import report
from app.bench.baselines import in_own_thread, run_direct, seed_rows
from app.bench.cpu import engine_pools, peak_rss_mb
from app.bench.machine import loadavg, machine_facts
from app.bench.questions import HELD_OUT, Question, ensure_audio, load_audio, play_order
from app.bench.replay import BetweenTurns, with_replay
from app.bench.session import Session, SessionPlan
from app.compose import Engines
from app.config import Config

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """How much to run: the full bench, or ``quick()`` for the smoke run the tests use."""

    questions: int = 12
    barge_ins: int = 3
    direct_questions: int = 12  # questions also run through the engines directly (the baselines)
    budget_s: float = 230.0  # per backend; on a slow machine inputs are skipped and direct calls cut short
    session_share: float = 0.7  # of the budget, after which the session starts no new input
    session: SessionPlan = field(default_factory=SessionPlan)
    mode: str = "full"
    # Then one growing conversation in voices the set above does not use, every reply heard to its end.
    long_session: int = len(HELD_OUT)
    gui: bool = False  # then the same inputs through the real window (offscreen Qt), compared with headless

    @classmethod
    def quick(cls) -> Plan:
        return cls(questions=3, barge_ins=1, direct_questions=2, budget_s=75.0, mode="quick", long_session=0)


def _models(config: Config, remote: Any | None) -> dict:
    from app.model_registry import load_manifest, resolve

    specs = load_manifest()
    user = {"asr": config.asr_model, "llm": config.llm_model, "voice": config.voice}
    models = {}
    for kind, spec in specs.items():
        path = resolve(kind, user[kind])
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
        title = spec.title if not user[kind] else path.name
        models[kind] = {"title": title, "path": str(path), "size_mb": round(size / 1e6, 1)}
    if config.requantize_llm:
        models["llm"]["title"] += " (run as a cached Q8_0 copy)"
    elif config.repack_llm:
        models["llm"]["title"] += " (run as a cached IQ4_NL copy, repacked)"
    elif config.pick_llm_file:
        from app.config import cache_dir
        from app.engines.llm_pick import remembered

        choice = remembered(resolve("llm", config.llm_model), cache_dir() / "models", config.llm_threads)
        if choice and choice["file"] == "q8_0":
            models["llm"]["title"] += " (run as its Q8_0 copy: faster on this CPU)"
    if config.untie_llm:
        models["llm"]["title"] += " (output layer untied)"
    if remote is not None:
        models["remote llm"] = {"title": f"{remote.model or '(server default)'} at {remote.base_url}"}
    return models


def _offline_vad_turns(audio: np.ndarray, config: Config) -> int:
    """How many turns the VAD alone finds in an input: anything but 1 would distort the session."""
    from app.core.vad import FRAME_SAMPLES, SileroVad, TurnDetector, TurnDetectorSettings, VadDecision

    vad = SileroVad()
    detector = TurnDetector(TurnDetectorSettings(silence_ms=config.silence_ms, min_speech_ms=config.min_speech_ms))
    padded = np.concatenate([audio, np.zeros(16_000, dtype=np.float32)])
    turns = 0
    for i in range(0, len(padded) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        if detector.push(vad.probability(padded[i : i + FRAME_SAMPLES])) is VadDecision.END_OF_TURN:
            turns += 1
    return turns


def _make_face(enabled: bool) -> Any | None:
    """The replica when it can be built; without it the frame metrics are n/a."""
    if not enabled:
        return None
    try:
        from app.replica import Replica

        return Replica.from_assets()
    except Exception as exc:  # the replica is optional for the bench: degrade, and say so
        print(f"bench: replica unavailable ({exc}); frame metrics will be n/a", file=sys.stderr)
        return None


def run_bench(
    engines: Engines,
    config: Config,
    out_dir: Path,
    plan: Plan = Plan(),
    *,
    remote_llm: Any | None = None,
    include_local: bool = True,
    replica: bool = True,
    progress: Progress = lambda _m: None,
) -> dict:
    """Run everything, write bench.json / bench.md / bench.png into ``out_dir``, return the document."""
    started_wall, started = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_facts()
    order = play_order(plan.questions, plan.barge_ins)
    progress(f"Preparing {len(order)} spoken inputs…")
    paths = ensure_audio(order, out_dir / "questions")
    audio = {q.id: load_audio(paths[q.id]) for q in order}
    inputs = [_input_record(q, audio[q.id], paths[q.id], config) for q in order]
    notes = [f"input {i['id']} splits into {i['vad_turns']} turns offline" for i in inputs if i["vad_turns"] != 1]
    direct_qs = [q for q in order if q.kind == "question"][: plan.direct_questions]
    backends: list[tuple[str, Engines]] = [(engines.llm.name, engines)] if include_local or not remote_llm else []
    if remote_llm is not None:
        backends.append((remote_llm.name, replace(engines, llm=remote_llm)))
    results: dict[str, dict] = {}
    for name, eng in backends:
        deadline = time.monotonic() + plan.budget_s
        progress(f"[{name}] warm-up: each engine alone (finds the engines' thread pools)")
        calls = _warm_up_calls(eng, config, audio[order[0].id])
        pools = in_own_thread(partial(engine_pools, calls))
        progress(f"[{name}] conversation: {len(order)} inputs at real-time pace")
        release_s = plan.budget_s * plan.session_share
        release_until = time.monotonic() + release_s

        def headless(
            e: Engines, between: BetweenTurns, label: str = f"session-{name}", pools=pools, until=release_until
        ) -> dict:
            session = _session(label, e, config, order, audio, out_dir, plan.session, pools, replica, progress)
            session.between_turns = between
            return session.run(release_until=until)

        session_record = with_replay(eng, headless)
        progress(f"[{name}] engines called directly: {len(direct_qs)} questions")
        face = _make_face(replica)
        direct = in_own_thread(partial(run_direct, config, eng, direct_qs, audio, face, progress, deadline))
        if len(direct) < len(direct_qs):
            notes.append(f"[{name}] direct calls stopped after {len(direct)} questions to stay in the time budget")
        results[name] = {"session": session_record, "direct": direct}
        if plan.gui:  # next to the headless session: the host's speed drifts more over minutes than the window costs
            from app.bench.gui import gui_session

            progress(f"[{name}] the window (offscreen Qt, face and HUD painting): {len(order)} inputs")
            window = partial(gui_session, config=config, order=order, audio=audio, out_dir=out_dir, plan=plan.session)
            window = partial(window, known_threads=pools, progress=progress)
            results[name]["gui_session"] = with_replay(eng, lambda e, between, w=window: w(e, between_turns=between))
            # Headless again: the window is divided by the sessions around it, so the host's drift cancels.
            progress(f"[{name}] the headless conversation again, after the window: {len(order)} inputs")
            after = partial(headless, label=f"session-after-{name}", until=time.monotonic() + release_s)
            results[name]["session_after"] = with_replay(eng, after)
        if plan.long_session:
            results[name]["long_session"] = _long_session(name, eng, config, plan, out_dir, pools, replica, progress)
        results[name]["analysis"] = report.analyse(results[name])
    machine["loadavg_end"] = loadavg()
    doc = {
        "schema": 1,
        "run": {
            "started": started_wall,
            "duration_s": round(time.perf_counter() - started, 1),
            "mode": plan.mode,
            "argv": sys.argv,
        },
        "machine": machine,
        "models": _models(config, remote_llm),
        "settings": _settings(config, plan, order, direct_qs),
        "inputs": inputs,
        "backends": results,
        "seed_reference": seed_rows(),
        "resources": {"peak_rss_mb": round(peak_rss_mb(), 1), "load_s": engines.load_s},
        "notes": notes + _notes(results),
    }
    write_outputs(doc, out_dir)
    return doc


def _long_session(
    name: str,
    engines: Engines,
    config: Config,
    plan: Plan,
    out_dir: Path,
    pools: dict[int, str],
    replica: bool,
    progress: Progress,
) -> dict:
    """Held-out voices, one conversation, replies played to the end: what a user hears after a while."""
    held = list(HELD_OUT[: plan.long_session])
    progress(f"[{name}] long session: {len(held)} questions in other voices, every reply heard to its end")
    paths = ensure_audio(held, out_dir / "questions")
    audio = {q.id: load_audio(paths[q.id]) for q in held}
    whole_replies = replace(plan.session, playout_cap_s=120.0, generation_grace_s=0.0)
    label = f"long-session-{name}"

    def run(e: Engines, between: BetweenTurns) -> dict:
        session = _session(label, e, config, held, audio, out_dir, whole_replies, pools, replica, progress)
        session.between_turns = between
        return session.run()

    return with_replay(engines, run)


def _session(
    label: str,
    engines: Engines,
    config: Config,
    order: list[Question],
    audio: dict[str, np.ndarray],
    out_dir: Path,
    plan: SessionPlan,
    pools: dict[int, str],
    replica: bool,
    progress: Progress,
) -> Session:
    """A fresh conversation with its own face, logging to ``logs/<label>.jsonl``."""
    return Session(
        replace(config, log_dir=str(out_dir / "logs")),
        engines,
        order,
        audio,
        face=_make_face(replica),
        log_path=out_dir / "logs" / f"{label}.jsonl",
        plan=plan,
        known_threads=pools,
        progress=progress,
    )


def _warm_up_calls(engines: Engines, config: Config, audio: np.ndarray) -> dict[str, Callable[[], object]]:
    from app.core.cancel import CancelToken
    from app.core.engines import ChatMessage

    def llm() -> None:
        cancel = CancelToken()
        messages = [ChatMessage("system", config.system_prompt), ChatMessage("user", "Hello!")]
        for token in engines.llm.stream_chat(messages, cancel):
            if token.index >= 7:
                cancel.cancel("warm-up done")

    assert engines.asr is not None
    return {
        "asr": lambda: engines.asr.transcribe(audio),  # type: ignore[union-attr]
        "llm": llm,
        "tts": lambda: list(engines.tts.synthesize("Warming up the voice.")),
    }


def _input_record(q: Question, audio: np.ndarray, path: Path, config: Config) -> dict:
    return {
        "id": q.id,
        "text": q.text,
        "voice": q.voice,
        "kind": q.kind,
        "duration_s": round(len(audio) / 16_000, 2),
        "wav": path.name,
        "vad_turns": _offline_vad_turns(audio, config),
    }


def _settings(config: Config, plan: Plan, order: list[Question], direct_qs: list[Question]) -> dict:
    keep = (
        "silence_ms",
        "min_speech_ms",
        "llm_threads",
        "tts_threads",
        "asr_threads",
        "max_reply_tokens",
        "temperature",
        "context_tokens",
        "requantize_llm",
        "pick_llm_file",
        "repack_llm",
        "untie_llm",
        "yield_to_first_audio",
        "llm_backend",
    )
    values = asdict(config)
    return {
        **{k: values.get(k) for k in keep if k in values},
        "inputs": len(order),
        "questions": sum(q.kind == "question" for q in order),
        "barge_ins": sum(q.kind == "interrupter" for q in order),
        "direct_questions": len(direct_qs),
        **asdict(plan.session),
    }


def _notes(results: dict[str, dict]) -> list[str]:
    """Things a reader should know to trust (or distrust) the numbers."""
    notes = []
    for name, result in results.items():
        s = result["session"]
        if s["skipped_inputs"]:
            notes.append(f"[{name}] inputs skipped to stay in the time budget: {', '.join(s['skipped_inputs'])}")
        missed = [b["input"] for b in s["barge_ins"] if not b["happened"]]
        if missed:
            notes.append(f"[{name}] no barge-in happened for {', '.join(missed)} (the reply ended first)")
        if s["errors"]:
            notes.append(f"[{name}] {len(s['errors'])} pipeline errors, first: {s['errors'][0]['message']}")
        early = [_heard_before_made(t["marks_ms"]) for t in s["turns"]]
        early = [ms for ms in early if ms > 0]
        if early:
            notes.append(
                f"[{name}] in {len(early)} of {len(s['turns'])} turns the sink stamped the first reply sample as "
                f"heard before TTS had produced it (by up to {max(early):.1f} ms): the paced sink dates a block by "
                "when it was due, not when it was pulled, so 'first audio' can be early by up to its lag"
            )
        if not s["clean_shutdown"]:
            notes.append(f"[{name}] a stage thread did not stop within 3 s at shutdown")
    return notes


def _heard_before_made(marks: dict[str, float]) -> float:
    """How many ms the first sample was 'heard' before it was synthesized (0 when it was not)."""
    if "first_audio_played" not in marks or "tts_first_audio" not in marks:
        return 0.0
    return max(0.0, marks["tts_first_audio"] - marks["first_audio_played"])


def write_outputs(doc: dict, out_dir: Path) -> None:
    from app.bench.chart import draw

    (out_dir / "bench.json").write_text(json.dumps(doc, indent=1, default=_jsonable), encoding="utf-8")
    (out_dir / "bench.md").write_text(report.markdown(doc), encoding="utf-8")
    draw(doc, out_dir / "bench.png")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")
