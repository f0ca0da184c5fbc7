"""`doppel bench`: the command that runs the benchmark and writes the report."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from app.config import Config


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bench",
        parents=[common],
        help="measure every stage's latency with spoken questions (headless), against baselines",
        description="Feeds fixed spoken questions (Piper and espeak-ng voices) at real-time pace through the "
        "whole pipeline, then through the engines called directly and as a naive chain, and writes bench.json, "
        "bench.md and bench.png. About 9 minutes on 2 cores (10 with --gui); --quick takes about one.",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 3 questions, 1 barge-in, 2 baseline questions")
    p.add_argument("--out", type=Path, default=Path("bench-out"), metavar="DIR", help="output folder (bench-out/)")
    p.add_argument(
        "--backend",
        dest="bench_backend",
        choices=["local", "openai"],
        default=None,
        help="openai: also run the remote LLM (--base-url, --model) and compare it with the local one",
    )
    p.add_argument("--questions", type=int, metavar="N", help="how many questions (1-12)")
    p.add_argument("--barge-ins", dest="barge_ins", type=int, metavar="N", help="how many barge-in pairs (0-3)")
    p.add_argument(
        "--long",
        dest="long_session",
        type=int,
        metavar="N",
        help="turns of the long session in held-out voices, replies heard to the end (full: 22, --quick: 0)",
    )
    p.add_argument(
        "--gui",
        dest="bench_gui",
        action="store_true",
        help="also play the same inputs through the real window (offscreen Qt) and compare it with headless",
    )
    p.add_argument("--no-replica", dest="replica", action="store_false", help="run without the replica face")
    p.add_argument(
        "--levers",
        action="store_true",
        help="instead: each latency trick OFF vs ON, interleaved, with its quality guard (levers.md; ~5 min)",
    )
    p.add_argument(
        "--asr-compare",
        dest="asr_compare",
        action="store_true",
        help="instead: Moonshine vs Whisper on the questions and noisy, fast, accented and short variants (asr.md)",
    )
    p.add_argument(
        "--replies",
        action="store_true",
        help="instead: reply quality (right answers, parroting, persona leakage, cut or long replies, language) "
        "per model with its latency (replies.md; --quick: a small subset)",
    )
    p.add_argument(
        "--turns",
        action="store_true",
        help="instead: turn-taking (hesitations, backchannels, interruptions, complete questions), the turn "
        "model vs the fixed 250 ms window (turns.md; --quick: a quarter of the set)",
    )
    p.add_argument(
        "--lips",
        action="store_true",
        help="instead: the replica measured from its pixels with the face mesh (lip sync, rounding, closures, "
        "blinks, identity, landmark fits, render time; replica.md, replica-mouth.jpg; ~5 min)",
    )
    p.add_argument(
        "--variant",
        dest="reply_variants",
        action="append",
        default=[],
        metavar="SPEC",
        help="with --replies: LABEL:model=NAME|PATH,style=NAME,temp=X,repeat_penalty=X (repeatable; "
        "default: every bundled model installed)",
    )
    p.add_argument(
        "--typed-only", dest="typed_only", action="store_true", help="with --replies: skip the spoken prompts"
    )
    p.add_argument(
        "--rounds", type=int, default=3, metavar="N", help="with --replies: typed prompts N times, one seed each (3)"
    )
    p.set_defaults(func=run)


def plan_from_args(args: argparse.Namespace):  # -> Plan (imported lazily: the CLI must start fast)
    from app.bench.runner import Plan

    plan = Plan.quick() if args.quick else Plan()
    if args.questions is not None:
        n = max(1, min(12, args.questions))
        plan = replace(plan, questions=n, direct_questions=min(plan.direct_questions, n))
    if args.barge_ins is not None:
        plan = replace(plan, barge_ins=max(0, min(3, args.barge_ins)))
    if getattr(args, "bench_gui", False):
        plan = replace(plan, gui=True)
    if getattr(args, "long_session", None) is not None:
        from app.bench.questions import HELD_OUT

        plan = replace(plan, long_session=max(0, min(len(HELD_OUT), args.long_session)))
    return plan


def wants_remote(args: argparse.Namespace, config: Config) -> bool:
    """`--backend openai`, or the global `--llm openai`, adds the remote LLM to the run."""
    backend = getattr(args, "bench_backend", None) or config.llm_backend
    return backend == "openai"


def run(args: argparse.Namespace, config: Config) -> int:
    if getattr(args, "levers", False):
        from app.bench.levers import run_cli

        return run_cli(replace(config, asr_engine="whisper"), args.out, args.quick)  # its window lever is Whisper's
    if getattr(args, "replies", False):
        from app.bench.replies_report import run_cli as run_replies

        rounds = max(1, args.rounds)
        return run_replies(config, args.out, args.quick, args.reply_variants, not args.typed_only, rounds)
    if getattr(args, "turns", False):
        from app.bench.turns import run_cli as run_turns

        return run_turns(config, args.out, args.quick)
    if getattr(args, "lips", False):
        from app.replica.bench import run as run_lips

        run_lips(args.out, args.quick)
        return 0
    if getattr(args, "asr_compare", False):
        from app.bench.asr import run_cli as run_asr_compare

        return run_asr_compare(config, args.out, args.quick)
    from app.bench.runner import run_bench
    from app.compose import load_engines, load_llm

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    plan = plan_from_args(args)
    say("Loading models…")
    engines = load_engines(replace(config, llm_backend="local"))
    remote = None
    if wants_remote(args, config):
        remote = load_llm(replace(config, llm_backend="openai", fallback_to_local=False))
    doc = run_bench(engines, config, args.out, plan, remote_llm=remote, replica=args.replica, progress=say)
    for name, result in doc["backends"].items():
        p = result["analysis"]["pipeline"]["speech_end_to_first_audio_ms"]
        r = result["analysis"]["ratios"]
        say(
            f"[{name}] end of speech -> first audio p50 {p['p50'] or 0:.0f} ms; pipeline/raw "
            f"{r['pipeline_over_raw']['speech_end_to_first_audio_ms'] or 0:.2f}, naive/pipeline "
            f"{r['naive_over_pipeline']['speech_end_to_first_audio_ms'] or 0:.2f}"
        )
    print(args.out / "bench.md")
    return 0
