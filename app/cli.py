"""`doppel`: the command line. Without a command it opens the app."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from app import __version__
from app.config import Config, ConfigError, config_dir, load_config
from app.model_registry import ModelError

EPILOG = """\
models: the defaults ship in PyPI packages (see models/README.md); any model on
disk works by path: --asr-model DIR, --llm-model FILE.gguf, --voice FILE.onnx;
speech recogniser: --asr whisper (default) or --asr moonshine (faster, mishears more).
config: %(config)s (TOML; sections [models] [llm] [persona] [turns] [paths]).
remote LLM: --llm openai --base-url http://host:8080/v1 --model NAME, with the
API key in $DOPPEL_API_KEY (or the variable named by --api-key-env).
trouble? run `doppel doctor`.
"""


def _common_options() -> argparse.ArgumentParser:
    """Options every command accepts (SUPPRESS keeps a command's value from clobbering the root's)."""
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    g = p.add_argument_group("models and backend")
    g.add_argument("--config", type=Path, default=s, help="config file (default: %s)" % (config_dir() / "config.toml"))
    g.add_argument(
        "--asr",
        dest="asr_engine",
        choices=["whisper", "moonshine"],
        default=s,
        help="speech recogniser (default whisper; moonshine: ~40 ms faster per question, mishears more; docs/asr.md)",
    )
    g.add_argument(
        "--asr-model", dest="asr_model", default=s, metavar="DIR", help="model folder for the chosen recogniser"
    )
    g.add_argument("--llm-model", dest="llm_model", default=s, metavar="GGUF", help="local chat model file")
    g.add_argument("--voice", default=s, metavar="ONNX", help="Piper voice (.onnx with .onnx.json beside it)")
    g.add_argument(
        "--photo", dest="face_photo", default=s, metavar="IMAGE", help="make the replica from this photo's face"
    )
    g.add_argument(
        "--name", dest="persona_name", default=s, metavar="NAME", help="the replica's name (the persona prompt uses it)"
    )
    g.add_argument(
        "--requantize",
        dest="requantize_llm",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="always run a Q4/Q5 GGUF as its cached Q8_0 copy (by default --pick-file times both once per CPU)",
    )
    g.add_argument(
        "--pick-file",
        dest="pick_llm_file",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="time the shipped GGUF against its Q8_0 copy once on this CPU and run the faster (default: on)",
    )
    g.add_argument(
        "--repack",
        dest="repack_llm",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="run a Q4_1/Q5/Q8 GGUF as a cached IQ4_NL copy llama.cpp repacks: ~36%% faster, fewer right answers",
    )
    g.add_argument(
        "--untie",
        dest="untie_llm",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="give a GGUF with tied embeddings its own output layer (a cached copy, same weights): ~5%% faster decode",
    )
    g.add_argument("--llm", dest="llm_backend", choices=["local", "openai"], default=s, help="LLM backend")
    g.add_argument(
        "--base-url", dest="base_url", default=s, help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1"
    )
    g.add_argument("--model", dest="remote_model", default=s, help="model name on the remote server")
    g.add_argument("--api-key-env", dest="api_key_env", default=s, help="environment variable holding the API key")
    g.add_argument(
        "--no-fallback",
        dest="fallback_to_local",
        action="store_false",
        default=s,
        help="do not fall back to the local model when the server fails",
    )
    g.add_argument("--threads", dest="llm_threads", type=int, default=s, help="LLM threads (default 2)")
    g.add_argument(
        "--silence-ms", dest="silence_ms", type=int, default=s, help="silence that ends a complete turn (250)"
    )
    g.add_argument(
        "--max-silence-ms",
        dest="max_silence_ms",
        type=int,
        default=s,
        help="silence that ends a turn judged unfinished, e.g. after 'so I was thinking about' (1500)",
    )
    g.add_argument(
        "--turn-cues",
        dest="turn_cues",
        choices=["off", "text", "llm", "audio", "text+llm", "text+audio", "llm+audio", "text+llm+audio"],
        default=s,
        help="what judges the end of a turn: the words, the LLM's P(end), Smart Turn on the audio (text+llm)",
    )
    g.add_argument("--log-dir", dest="log_dir", default=s, help="where conversation logs (JSONL) go")
    g.add_argument("-v", "--verbose", action="store_true", default=s, help="debug logging")
    return p


Command = Callable[[argparse.Namespace, Config], int]


def _run_gui(args: argparse.Namespace, config: Config) -> int:
    """Imports Qt only when the window is wanted, so the other commands work without it."""
    from app.ui.launch import run_gui

    return run_gui(args, config)


def _commands() -> dict[str, tuple[str, Command]]:
    from app import doctor, textchat

    return {
        "gui": ("open the app window (the default when no command is given)", _run_gui),
        "chat": ("text chat in the terminal (the reply is spoken if a speaker is present)", textchat.run),
        "doctor": ("check models, devices and display; say what to fix", doctor.run),
    }


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="doppel",
        description="Talk face to face with a lifelike replica, fully offline on your CPU. "
        "Without a command, opens the app window.",
        epilog=EPILOG % {"config": config_dir() / "config.toml"},
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"doppel {__version__}")
    parser.add_argument(
        "--self-test",
        dest="self_test",
        action="store_true",
        help="load every model, run one text turn (LLM -> TTS -> replica) offscreen, print a verdict and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, func) in _commands().items():
        cmd = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        cmd.set_defaults(func=func)
        if name == "chat":
            cmd.add_argument("--mute", action="store_true", help="do not speak the replies")
        if name == "gui":
            cmd.add_argument("--settings", type=Path, metavar="INI", help="keep the window's settings in this file")
    # Commands that live beside their subsystem; static imports so PyInstaller sees them.
    from app import headless
    from app.bench import cli as bench_cli
    from app.replica import cli_render

    for register in (headless.register, cli_render.register, bench_cli.register):
        register(sub, common)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    config = load_config(getattr(args, "config", None))
    return config.with_overrides(**vars(args))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
        func: Command = getattr(args, "func", _run_gui)
        if getattr(args, "self_test", False):
            from app import selftest

            func = selftest.run
        return func(args, config)
    except (ConfigError, ModelError) as exc:
        print(f"doppel: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
