"""An OpenAI-compatible chat server on 127.0.0.1 that misbehaves on purpose, one script step per request.

Each POST to /v1/chat/completions takes the next ``Step`` (the last one
repeats).  Steps stream SSE with chunked transfer encoding, like real servers,
unless ``chunked=False`` (then the body ends when the connection closes).
Blocking steps wait on ``release``, set by ``stop()``, so no thread outlives a test.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

TOKENS = ("Hello", " there", ",", " nice", " to", " meet", " you", ".", " How", " are", " you", "?")

Ending = Literal["done", "stall", "close", "malformed", "error_chunk", "finish_only"]


@dataclass(frozen=True)
class Step:
    status: int = 200
    message: str = ""  # error message in the JSON body of a non-200 answer
    retry_after: str | None = None
    tokens: tuple[str, ...] = TOKENS
    ending: Ending = "done"  # what follows the tokens
    usage: bool = True  # send a usage chunk when the client asks for it
    chunked: bool = True
    hold_headers: bool = False  # never even send the status line
    token_delay_s: float = 0.005
    reject_stream_options: bool = False
    keep_alive: bool = False  # keep the connection open for the next request (chunked only)
    not_a_stream: bool = False  # answer 200 with a plain JSON page (a wrong base_url, a captive proxy)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    client_port: int = 0
    t: float = field(default_factory=time.perf_counter)
    client_gone: bool = False  # a write failed: the client hung up mid-stream


class FakeOpenAiServer:
    def __init__(self, *steps: Step, api_key: str | None = None, models: tuple[str, ...] = ("fake-model",)) -> None:
        self.steps = list(steps) or [Step()]
        self.api_key = api_key
        self.models = models
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def chat_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("/chat/completions")]

    def next_step(self) -> Step:
        n = len(self.chat_requests) - 1
        return self.steps[min(n, len(self.steps) - 1)]

    def start(self) -> FakeOpenAiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2)

    def __enter__(self) -> FakeOpenAiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-request is what these tests do on purpose


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    @property
    def fake(self) -> FakeOpenAiServer:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self.fake.seen.append(Seen(self.path, dict(self.headers), {}))
        if not self._authorized():
            return
        if self.path.endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.fake.models]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        seen = Seen(self.path, dict(self.headers), body, self.client_address[1])
        self.fake.seen.append(seen)
        step = self.fake.next_step()
        if not self._authorized():
            return
        if body.get("model") not in self.fake.models:
            self._json(404, {"error": {"message": f"The model `{body.get('model')}` does not exist"}})
            return
        if step.reject_stream_options and "stream_options" in body:
            self._json(400, {"error": {"message": "Unrecognized request argument: stream_options"}})
            return
        if step.hold_headers:
            self.fake.release.wait(30)
            self.close_connection = True
            return
        if step.not_a_stream:
            self._json(200, {"hello": "this is not an event stream"})
            return
        if step.status != 200:
            extra = {"Retry-After": step.retry_after} if step.retry_after is not None else {}
            self._json(step.status, {"error": {"message": step.message or "error"}}, extra)
            return
        try:
            self._stream(step, body)
        except OSError:
            seen.client_gone = True
        self.close_connection = not step.keep_alive

    def _stream(self, step: Step, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if step.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if not step.keep_alive:
            self.send_header("Connection", "close")
        self.end_headers()
        chunked = step.chunked

        def send(text: str) -> None:
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            self.wfile.flush()

        def event(obj: dict[str, Any]) -> None:
            send(f"data: {json.dumps(obj)}\n\n")

        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body.get("model")}
        event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        for token in step.tokens:
            time.sleep(step.token_delay_s)
            event({**base, "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]})
        if step.ending == "stall":
            self.fake.release.wait(30)
            return
        if step.ending == "close":
            return  # no [DONE], and (when chunked) no terminating chunk either
        if step.ending == "malformed":
            send('data: {"choices": [{"delta": {"content": "oops"\n\n')
            self.fake.release.wait(30)
            return
        if step.ending == "error_chunk":
            event({"error": {"message": "model crashed: out of memory", "code": 500}})
            send("data: [DONE]\n\n")
        else:
            event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if step.usage and (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 21, "completion_tokens": len(step.tokens), "total_tokens": 0}
                event({**base, "choices": [], "usage": usage})
            if step.ending == "done":
                send("data: [DONE]\n\n")
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _authorized(self) -> bool:
        key = self.fake.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        got = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        # Real servers echo (part of) the key they got; the client must not print it.
        self._json(401, {"error": {"message": f"Incorrect API key provided: {got}.", "type": "invalid_request_error"}})
        return False

    def _json(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
