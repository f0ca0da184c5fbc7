"""A remote LLM behind the local engine's protocol: OpenAI-compatible chat completions over SSE.

The HTTP exchange runs on a short-lived worker thread that posts what it reads
to a queue; ``stream_chat`` (the caller's thread) waits on that queue with the
deadlines (first token, stall) and the turn's cancel token.  A blocked socket
read can therefore never hold up a barge-in or a timeout: on either, the
generator shuts the socket down, which wakes the worker and ends the request.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

from app.core.cancel import NEVER_CANCELLED, CancelToken
from app.core.engines import ChatMessage, GenerationStats, Token
from app.engines.llm_call import RemoteCall, StreamTiming, server_count, server_rate
from app.engines.llm_errors import LlmBackendError, RemoteErrorMessages, Retry
from app.engines.llm_fallback import FallbackLlm
from app.engines.secrets import api_key_from_env_or_keyring, key_problem

__all__ = ["FallbackLlm", "LlmBackendError", "OpenAiCompatLlm", "StreamTiming", "api_key_from_env_or_keyring"]

log = logging.getLogger(__name__)

_POLL_S = 0.02  # how often the waiting caller looks at the cancel token
_MAX_BACKOFF_S = 4.0


class _Resend(Exception):
    """The server rejected an optional field; send again without it (uses no attempt)."""


class OpenAiCompatLlm(RemoteErrorMessages):
    """Streams chat completions from any OpenAI-compatible server (llama.cpp, vLLM, Ollama, OpenAI).

    ``model=""`` asks the server for its first model.  429 and 5xx are retried
    before the first token with exponential backoff (or the server's
    Retry-After), never after it: a half-spoken reply cannot be restarted.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        *,
        max_tokens: int = 96,
        temperature: float = 0.6,
        connect_timeout_s: float = 3.0,
        first_token_timeout_s: float = 10.0,
        stall_timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        context_tokens: int = 8192,
        api_key_env: str = "DOPPEL_API_KEY",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key or None
        self._key_env = api_key_env
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.first_token_timeout_s = first_token_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.context_tokens = context_tokens
        self.last_stats = GenerationStats(backend=self.name)
        self.last_timing = StreamTiming()
        self.last_error = ""
        self._send_usage_option = True  # dropped if the server rejects stream_options
        self._last_stream: Any = None
        self._key_problem = key_problem(self._api_key, api_key_env)
        usable = self._api_key and not self._key_problem
        headers = {"Authorization": f"Bearer {self._api_key}"} if usable else {}
        # The read timeout is only a backstop for a worker nobody can wake; the caller's
        # deadlines are the real ones.
        read_s = max(first_token_timeout_s, stall_timeout_s) + 1.0
        timeout = httpx.Timeout(read_s, connect=connect_timeout_s, pool=connect_timeout_s)
        self._client = httpx.Client(headers=headers, timeout=timeout)

    def __repr__(self) -> str:  # never shows the key
        key = "set" if self._api_key else "none"
        return f"OpenAiCompatLlm(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    def close(self) -> None:
        self._client.close()

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Approximate: 4 characters per token plus 4 per message for the chat template.

        The remote tokenizer is unknown; this errs a little high for English, which
        is the safe side for history trimming.
        """
        return sum(4 + math.ceil(len(m.content) / 4) for m in messages) + 2

    # --- the caller's side -------------------------------------------------

    def stream_chat(self, messages: Sequence[ChatMessage], cancel: CancelToken = NEVER_CANCELLED) -> Iterator[Token]:
        prompt_tokens = self.count_tokens(messages)
        stats = self.last_stats = GenerationStats(
            backend=self.name, prompt_tokens=prompt_tokens, evaluated_tokens=prompt_tokens
        )
        self.last_timing = StreamTiming()
        self.last_error = ""
        if self._key_problem:
            self.last_error, stats.finish_reason = self._key_problem, "error"
            raise LlmBackendError(self._key_problem, kind="auth")
        call = RemoteCall(self._payload(messages), self._last_stream)
        worker = threading.Thread(target=self._work, args=(call,), name="doppel-openai-llm", daemon=True)
        worker.start()
        complete = False
        try:
            complete = yield from self._drain(call, stats, cancel)
        except LlmBackendError as exc:
            self.last_error = str(exc)
            stats.finish_reason = "error"
            raise
        finally:
            if not complete:  # a finished reply leaves its connection to the pool for the next turn
                call.abort()
            worker.join(timeout=0.2)
            self._finish(call, stats)

    def _drain(self, call: RemoteCall, stats: GenerationStats, cancel: CancelToken) -> Generator[Token, None, bool]:
        """Yield tokens as the worker posts them; True once the reply is complete."""
        deadline = call.t0 + self.first_token_timeout_s
        while True:
            if cancel.cancelled:
                stats.finish_reason = "cancelled"
                return False
            left = deadline - time.perf_counter()
            if left <= 0:
                raise self._timeout_error(len(call.arrivals))
            try:
                kind, value = call.events.get(timeout=min(_POLL_S, left))
            except queue.Empty:
                continue
            if kind == "delta":
                text, t_arrived = value
                call.arrivals.append(t_arrived)
                yield Token(text, len(call.arrivals) - 1)
                deadline = time.perf_counter() + self.stall_timeout_s
            elif kind == "finish":
                stats.finish_reason = value
            elif kind in ("usage", "timings"):
                call.extra[kind] = value
            elif kind == "error":
                raise value
            elif kind == "end":
                return True

    def _finish(self, call: RemoteCall, stats: GenerationStats) -> None:
        """Fill ``last_stats``/``last_timing``: server-reported numbers win over counted ones."""
        arrivals = call.arrivals
        usage = call.extra.get("usage") or {}
        timings = call.extra.get("timings") or {}
        n = len(arrivals)
        completion = server_count(usage.get("completion_tokens")) or n
        stats.completion_tokens = completion
        if server_count(usage.get("prompt_tokens")):
            stats.prompt_tokens = stats.evaluated_tokens = server_count(usage.get("prompt_tokens"))
        if server_count(timings.get("prompt_n")) is not None:  # llama.cpp: prompt tokens not in its cache
            stats.evaluated_tokens = server_count(timings.get("prompt_n")) or 0
        span = arrivals[-1] - arrivals[0] if n >= 2 else 0.0
        tps, source, server_tps = None, "", None
        if server_rate(timings.get("predicted_per_second")):
            tps = server_tps = server_rate(timings.get("predicted_per_second"))
            source = "server timings"
        elif usage and span > 0 and completion >= 2:
            tps = server_tps = (completion - 1) / span
            source = "server usage"
        elif span > 0:
            tps, source = (n - 1) / span, "counted"
        stats.server_tps = server_tps
        ttft = (arrivals[0] - call.t0) * 1000.0 if arrivals else None
        self.last_timing = StreamTiming(ttft, tps, source, n, call.attempts)

    # --- the worker's side -------------------------------------------------

    def _payload(self, messages: Sequence[ChatMessage]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def _work(self, call: RemoteCall) -> None:
        """Worker thread: discover the model, request with retries, post events; never raises."""
        try:
            if not call.payload["model"]:
                call.payload["model"] = self.model = self._discover_model()
            attempt = 0
            while not call.stop.is_set():
                call.attempts += 1
                try:
                    self._stream_once(call)
                    return
                except _Resend:
                    continue
                except Retry as retry:
                    delay = self._backoff(attempt, retry.delay_s)
                    remaining = call.t0 + self.first_token_timeout_s - time.perf_counter()
                    if attempt >= self.retries or delay >= remaining:
                        raise retry.error from None
                    log.info("LLM server said %s; retrying in %.2f s", retry.error.status, delay)
                    attempt += 1
                    if call.stop.wait(delay):
                        return
        except LlmBackendError as exc:
            if not call.stop.is_set():
                call.put("error", exc)
        except Exception as exc:
            if not call.stop.is_set():
                call.put("error", self._transport_error(exc))

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, _MAX_BACKOFF_S)
        return min(self.backoff_s * 2**attempt, _MAX_BACKOFF_S)

    def _stream_once(self, call: RemoteCall) -> None:
        payload = dict(call.payload)
        if self._send_usage_option:
            payload["stream_options"] = {"include_usage": True}
        url = f"{self.base_url}/chat/completions"
        with connect_sse(self._client, "POST", url, json=payload, extensions={"trace": call.trace}) as source:
            response = source.response
            self._last_stream = response.extensions.get("network_stream")
            call.attach(self._last_stream)
            try:
                if response.status_code != 200:
                    response.read()
                    if (
                        response.status_code in (400, 422)
                        and self._send_usage_option
                        and "stream_options" in response.text
                    ):
                        self._send_usage_option = False
                        raise _Resend
                    raise self._status_error(response)
                events = source.iter_sse()
                for sse in events:
                    if call.stop.is_set():
                        return
                    data = sse.data.strip()
                    if data == "[DONE]":
                        call.put("end")
                        for _ in events:  # read to the end so the connection can be reused
                            pass
                        return
                    if data:
                        self._handle_chunk(data, call)
            except SSEError as exc:
                raise LlmBackendError(
                    f"The server at {self.base_url} did not answer with an event stream ({exc}). "
                    "Check that llm.base_url points at an OpenAI-compatible API, usually ending in /v1.",
                    kind="malformed",
                ) from exc
            finally:
                call.attach(None)
        if call.stop.is_set():
            return
        if call.saw_finish:  # some servers omit [DONE]; a finish_reason is as good
            call.put("end")
            return
        raise LlmBackendError(
            f"The LLM server at {self.base_url} closed the stream before the reply was complete "
            "(no finish_reason, no [DONE]). Check the server's log; it may have crashed or run out of memory.",
            kind="truncated",
        )

    def _handle_chunk(self, data: str, call: RemoteCall) -> None:
        try:
            chunk = json.loads(data)
            if not isinstance(chunk, dict):
                raise TypeError(f"expected an object, got {type(chunk).__name__}")
            if chunk.get("error"):
                err = chunk["error"]
                msg = err.get("message", err) if isinstance(err, dict) else err
                raise LlmBackendError(
                    f"The LLM server at {self.base_url} reported an error mid-reply: "
                    f"{self._clip(str(msg))}. Check the server's log.",
                    kind="server",
                )
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text is not None and not isinstance(text, str):
                    raise TypeError(f"content is {type(text).__name__}, not text")
                if text:
                    call.put("delta", (text, time.perf_counter()))
                if choice.get("finish_reason"):
                    call.saw_finish = True
                    call.put("finish", str(choice["finish_reason"]))
            for kind in ("usage", "timings"):
                if isinstance(chunk.get(kind), dict):
                    call.put(kind, chunk[kind])
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # RecursionError: absurd nesting
            raise LlmBackendError(
                f"The LLM server at {self.base_url} sent a malformed stream chunk ({exc}): "
                f"{self._clip(data)!r}. It may not be OpenAI-compatible, or a proxy is altering the stream.",
                kind="malformed",
            ) from exc

    def _discover_model(self) -> str:
        url = f"{self.base_url}/models"
        response = self._client.get(url)
        if response.status_code != 200:
            error = self._status_error(response)
            raise error.error if isinstance(error, Retry) else error
        try:
            return str(response.json()["data"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LlmBackendError(
                f"The server at {self.base_url} lists no models at {url}. Set llm.model in the config.",
                kind="model",
            ) from exc
