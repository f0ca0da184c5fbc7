"""`doppel chat`: type to the replica in a terminal; replies stream as they are generated."""

from __future__ import annotations

import argparse
import sys

from app.config import Config

LONG_TEXT_CHARS = 1000  # longer lines are checked against the model's context


def run(args: argparse.Namespace, config: Config) -> int:
    from app.compose import load_engines
    from app.core.conversation import Conversation
    from app.core.events import ErrorEvent, LlmToken, TurnEnded, TurnMetrics

    print("Loading models…", file=sys.stderr)
    engines = load_engines(config, with_asr=False)
    speak = not getattr(args, "mute", False)
    conversation = Conversation.for_text(config, engines, speak=speak)
    conversation.log.on_error = lambda message: print(f"\n[log] {message}", file=sys.stderr)

    def show(event: object) -> None:
        if isinstance(event, LlmToken):
            print(event.text, end="", flush=True)
        elif isinstance(event, ErrorEvent):
            print(f"\n[{event.source}] {event.message}", file=sys.stderr)
        elif isinstance(event, TurnMetrics) and event.values.get("final"):
            v = event.values
            print(
                f"\n  (TTFT {v['ttft_ms'] or 0:.0f} ms, {v['tps'] or 0:.0f} tok/s, "
                f"20/TPS+TTFT {v['llm_latency_ms'] or 0:.0f} ms)"
            )
        elif isinstance(event, TurnEnded):
            pass

    conversation.bus.subscribe(show)
    conversation.start()
    print(f"Talking to {config.persona_name}. Type a message; an empty line or Ctrl-D quits.", file=sys.stderr)
    try:
        while True:
            try:
                line = input("\nyou> ").strip()
            except EOFError:
                break
            if not line:
                break
            if len(line) > LONG_TEXT_CHARS and conversation.history.fit(line) != line:
                print("[note] too long for the model's context: it reads the beginning and the end.", file=sys.stderr)
            print(f"{config.persona_name.lower()}> ", end="", flush=True)
            conversation.say(line)
            conversation.wait_idle()
    finally:
        conversation.shutdown()
    return 0
