"""`doppel converse`: the whole chain from recorded questions (any common audio file) to a WAV of the replies."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.config import Config
from app.core import events as ev
from app.core.audio import AudioFileError, read_audio
from app.core.audio_io import SOURCE_RATE, FileSource, SourceItem, WavWriterSink
from app.core.history import JsonlLog

SHOWN_METRICS = (
    ("ASR", "asr_final_ms", "ms"),
    ("TTFT", "ttft_ms", "ms"),
    ("TPS", "tps", ""),
    ("20/TPS+TTFT", "llm_latency_ms", "ms"),
    ("speech end→first audio", "speech_end_to_first_audio_ms", "ms"),
    ("→first frame", "speech_end_to_first_frame_ms", "ms"),
)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "converse",
        parents=[common],
        help="talk to the replica with audio files instead of a microphone (headless)",
        description="Plays each --input file (WAV, FLAC, OGG, MP3...) at real-time pace as if spoken (waiting "
        "for the reply before the next), runs ASR -> LLM -> TTS, and writes what the replica said, "
        "time-aligned, to --output.",
    )
    p.add_argument("--input", action="append", required=True, type=Path, metavar="AUDIO", help="a spoken question")
    p.add_argument("--output", type=Path, metavar="WAV", help="write the session's audio out here")
    p.add_argument("--log", type=Path, metavar="JSONL", help="conversation log (default: in the log dir)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds per turn")
    p.add_argument("--no-face", action="store_true", help="do not animate the replica (no first-frame metric)")
    p.set_defaults(func=run)


def _format_metrics(values: dict[str, float | None]) -> str:
    parts = []
    for label, key, unit in SHOWN_METRICS:
        v = values.get(key)
        if v is not None:
            parts.append(f"{label} {v:.0f}{(' ' + unit) if unit else ''}")
    return ", ".join(parts)


def run(args: argparse.Namespace, config: Config) -> int:
    try:  # before anything heavy is imported: a broken file is reported at once
        questions = [read_audio(path, SOURCE_RATE)[0] for path in args.input]
    except AudioFileError as exc:
        print(f"doppel: {exc}", file=sys.stderr)
        return 2
    from app.compose import load_engines
    from app.core.conversation import Conversation

    print("Loading models…", file=sys.stderr)
    engines = load_engines(config)
    holder: dict[str, Conversation] = {}

    def ready() -> bool:
        return holder["c"].idle

    items = [
        SourceItem(q, ready if i else None, 0.6, str(p))
        for i, (q, p) in enumerate(zip(questions, args.input, strict=True))
    ]
    source = FileSource(items)
    sink = WavWriterSink(args.output, engines.tts.sample_rate)
    log = JsonlLog(args.log) if args.log else JsonlLog.in_dir(config.log_dir)
    log.on_error = lambda message: print(f"doppel: {message}", file=sys.stderr)  # once; the turns go on
    face = None
    if not args.no_face:
        from app.replica import Replica

        face = Replica.from_file(config.face_photo) if config.face_photo else Replica.from_assets()
    conversation = Conversation(
        config, engines, source=source, sink=sink, log=log, face=face, on_frame=(lambda _frame: None) if face else None
    )
    holder["c"] = conversation

    def show(event: ev.Event) -> None:
        if isinstance(event, ev.TranscriptFinal):
            print(f"[turn {event.turn_id}] you: {event.text}")
        elif isinstance(event, ev.ReplyText):
            print(f"[turn {event.turn_id}] {config.persona_name.lower()}: {event.text}")
        elif isinstance(event, ev.TurnInterrupted):
            print(f"[turn {event.turn_id}] (interrupted)")
        elif isinstance(event, ev.ErrorEvent):
            print(f"[turn {event.turn_id}] error from {event.source}: {event.message}", file=sys.stderr)
        elif isinstance(event, ev.TurnMetrics) and event.values.get("final"):
            print(f"[turn {event.turn_id}] {_format_metrics(event.values)}")

    conversation.bus.subscribe(show)
    conversation.start()
    deadline = time.monotonic() + args.timeout * (len(items) + 1)
    try:
        while time.monotonic() < deadline and not source.finished.is_set():
            time.sleep(0.1)
        time.sleep(config.silence_ms / 1000 + 0.5)  # let the last turn close
        conversation.wait_idle(max(0.0, deadline - time.monotonic()))
    finally:
        conversation.shutdown()
    print(f"log: {log.path}", file=sys.stderr)
    if args.output:
        print(f"audio: {args.output}", file=sys.stderr)
    return 0
