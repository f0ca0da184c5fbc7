"""Hypothesis against the two parsers that read what others wrote: the SSE stream and the config file.

The SSE side runs the real client against a loopback HTTP server that answers
each example with the generated body, so bytes go through httpx, httpx-sse and
our chunk handling exactly as they would from a misbehaving server.  Whatever
arrives, ``stream_chat`` yields text tokens or raises ``LlmBackendError``.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import _NUMBER_RANGES, Config, ConfigError, load_config
from app.core.engines import ChatMessage
from app.engines.llm_openai import LlmBackendError, OpenAiCompatLlm

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESSAGES = [ChatMessage("user", "Hi")]


class _BodyServer(ThreadingHTTPServer):
    daemon_threads = True
    body = b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class Sse:
    """The server and one client for all examples (a client per example costs an SSL context each)."""

    def __init__(self) -> None:
        self.server = _BodyServer(("127.0.0.1", 0), _Handler)
        url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.llm = OpenAiCompatLlm(
            url, "m", None, connect_timeout_s=1.0, first_token_timeout_s=3.0, stall_timeout_s=3.0
        )


@pytest.fixture(scope="module")
def sse() -> Iterator[Sse]:
    sse = Sse()
    thread = threading.Thread(target=sse.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield sse
    sse.llm.close()
    sse.server.shutdown()
    sse.server.server_close()


def _run(sse: Sse, body: bytes) -> tuple[list[str], LlmBackendError | None]:
    """Stream one reply from ``body``; anything but tokens or LlmBackendError fails the test."""
    sse.server.body = body
    llm = sse.llm
    tokens: list[str] = []
    error = None
    try:
        for token in llm.stream_chat(MESSAGES):
            assert isinstance(token.text, str) and token.text
            tokens.append(token.text)
    except LlmBackendError as exc:
        error = exc
        assert str(exc) and exc.kind
    stats = llm.last_stats
    assert isinstance(stats.completion_tokens, int) and stats.completion_tokens >= 0
    assert stats.server_tps is None or math.isfinite(stats.server_tps)
    return tokens, error


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
chunk_like = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(
            st.fixed_dictionaries(
                {}, optional={"delta": st.dictionaries(st.sampled_from(["content", "role"]), json_values, max_size=2)}
            )
            | json_values,
            max_size=3,
        )
        | json_values,
        "usage": st.dictionaries(st.sampled_from(["completion_tokens", "prompt_tokens"]), json_values) | json_values,
        "timings": st.dictionaries(st.sampled_from(["predicted_per_second", "prompt_n"]), json_values),
        "error": json_values,
    },
)
sse_field = st.sampled_from(["data", "event", "id", "retry", "", "dat"])
sse_line = st.one_of(
    st.builds(lambda v: "data: " + json.dumps(v, allow_nan=True), chunk_like),
    st.builds(lambda v: "data: " + json.dumps(v, allow_nan=True), json_values),
    st.just("data: [DONE]"),
    st.builds(lambda f, v: f"{f}: {v}", sse_field, st.text(max_size=30)),
    st.just(": keep-alive"),
    st.just(""),
    st.just('data: {"usage": {"completion_tokens": 1e999, "prompt_tokens": NaN}}'),
    st.just("data: " + "[" * 5000 + "]" * 5000),
)


@FUZZ
@given(body=st.binary(max_size=600))
def test_any_bytes_give_tokens_or_a_clear_error(sse, body: bytes) -> None:
    _run(sse, body)


@FUZZ
@given(lines=st.lists(sse_line, max_size=12), newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_event_streams_of_any_shape_give_tokens_or_a_clear_error(sse, lines: list[str], newline: str) -> None:
    body = newline.join(line + newline for line in lines).encode("utf-8", "surrogatepass")
    _run(sse, body)


@settings(max_examples=25, deadline=None)
@given(texts=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8), done=st.booleans())
def test_a_well_formed_stream_yields_exactly_its_text(sse, texts: list[str], done: bool) -> None:
    chunks = [{"choices": [{"delta": {"content": t}, "finish_reason": None}]} for t in texts]
    chunks.append({"choices": [{"delta": {}, "finish_reason": "stop"}]})
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + ("data: [DONE]\n\n" if done else "")
    tokens, error = _run(sse, body.encode())
    assert error is None
    assert tokens == texts


# --- the config loader -------------------------------------------------------------


def _toml(value: object) -> str:
    """Just enough of a TOML writer for generated values (an invalid result is a fine input too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


KNOWN_KEYS = [
    "asr", "llm", "voice", "requantize", "pick_file", "repack", "untie", "backend", "base_url", "model", "api_key_env",
    "fallback_to_local",
    "connect_timeout_s", "first_token_timeout_s", "stall_timeout_s", "max_reply_tokens", "temperature",
    "context_tokens", "history_tokens", "threads", "name", "system_prompt", "silence_ms", "min_speech_ms", "log_dir",
    "api_key",
]  # fmt: skip
toml_values = st.recursive(
    st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(min_size=1, max_size=12)
sections = st.sampled_from(["models", "llm", "persona", "turns", "paths"]) | st.text(min_size=1, max_size=10)
documents = st.dictionaries(sections, st.dictionaries(keys, toml_values, max_size=5) | toml_values, max_size=4)


def _check_loaded(path: Path) -> None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith("Config file")
        return
    defaults = Config()
    for f in fields(Config):
        value, default = getattr(config, f.name), getattr(defaults, f.name)
        assert isinstance(value, type(default) if default is not None else (str, type(None))), f.name
        if f.name in _NUMBER_RANGES:
            low, high = _NUMBER_RANGES[f.name]
            assert low <= value <= high and math.isfinite(value), f.name


@FUZZ
@given(doc=documents)
def test_config_documents_load_or_are_refused_with_a_message(tmp_path_factory, doc: dict) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    lines = []
    for section, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(section)}]")
            lines.extend(f"{json.dumps(k)} = {_toml(v)}" for k, v in table.items())
        else:
            lines.insert(0, f"{json.dumps(section)} = {_toml(table)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    _check_loaded(path)


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_config_bytes_load_or_are_refused_with_a_message(tmp_path_factory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_bytes(raw)
    _check_loaded(path)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[turns]\nsilence_ms = "250"\n', "[turns] silence_ms must be a whole number from 32 to 5000, not a string"),
        ("[llm]\ntemperature = nan\n", "temperature must be a number from 0 to 2, not nan"),
        ("[llm]\nthreads = 0\n", "threads must be a whole number from 1 to 256, not 0"),
        ('[llm]\nbackend = "remote"\n', "backend must be one of 'local', 'openai'"),
        ('[llm]\nkv_cache = "f32"\n', "kv_cache must be one of 'f16', 'q8_0', 'plain'"),
        ('[llm]\nbase_url = "localhost:8080"\n', "must be an http:// or https:// address"),
        ('[models]\nrequantize = "yes"\n', "requantize must be true or false"),
        ('[persona]\nname = "  "\n', "name must not be empty"),
        ("[voice]\nspeed = 1.2\n", "unknown section [voice]"),
        ("[turns]\nsilence = 3\n", "unknown key [turns] silence"),
        ("models = 3\n", "models must be a section"),
        ("[llm\nmodel = 1\n", "is not valid TOML"),
    ],
)
def test_config_names_the_bad_value_and_what_it_expects(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(path)


def test_config_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[llm]\nmodel = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)
