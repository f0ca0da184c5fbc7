"""What can go wrong with a remote LLM, in words a user can act on."""

from __future__ import annotations

import json

import httpx

from app.engines.secrets import key_hint, redact

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class LlmBackendError(RuntimeError):
    """A remote LLM failure; ``str()`` says what went wrong and how to fix it.

    ``kind`` is a short tag for logs and tests: connect, auth, model, rate_limit,
    server, bad_request, first_token_timeout, stall, truncated, malformed.
    """

    def __init__(self, message: str, *, kind: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class Retry(Exception):
    """A 429/5xx before the first token: worth another attempt after ``delay_s`` (None: backoff)."""

    def __init__(self, error: LlmBackendError, delay_s: float | None) -> None:
        self.error = error
        self.delay_s = delay_s


class RemoteErrorMessages:
    """Builds ``LlmBackendError``s from HTTP failures (mixed into the engine, which owns the fields)."""

    base_url: str
    model: str
    first_token_timeout_s: float
    stall_timeout_s: float
    _api_key: str | None
    _key_env: str

    def _timeout_error(self, n_tokens: int) -> LlmBackendError:
        if n_tokens == 0:
            return LlmBackendError(
                f"The LLM server at {self.base_url} sent no reply within {self.first_token_timeout_s:g} s. "
                "It may be overloaded or still loading the model; try again, pick a smaller model, or "
                'switch to the local model (llm.backend = "local").',
                kind="first_token_timeout",
            )
        return LlmBackendError(
            f"The LLM server at {self.base_url} stopped sending mid-reply: nothing for "
            f"{self.stall_timeout_s:g} s after {n_tokens} tokens. Check the server's log; the reply was cut short.",
            kind="stall",
        )

    def _clip(self, text: str, limit: int = 200) -> str:
        text = redact(text, self._api_key).strip()
        return text if len(text) <= limit else text[:limit] + "…"

    def _status_error(self, response: httpx.Response) -> LlmBackendError | Retry:
        status, where = response.status_code, f"The server at {self.base_url}"
        said = self._server_message(response)
        if status in (401, 403):
            how = "rejected the API key" if self._api_key else "requires an API key"
            msg = f"{where} {how} ({status}{said}). {key_hint(self._key_env)}"
            return LlmBackendError(msg, kind="auth", status=status)
        if status == 404:
            msg = (
                f"{where} has no model {self.model!r} or no chat endpoint (404{said}). Set llm.model to a "
                f"model the server lists at {self.base_url}/models, and check llm.base_url (usually ending in /v1)."
            )
            return LlmBackendError(msg, kind="model", status=status)
        if status in RETRY_STATUSES:
            what = "is rate-limiting requests" if status == 429 else "had an internal error"
            kind = "rate_limit" if status == 429 else "server"
            msg = f"{where} {what} ({status}{said}) and still did after retrying. Wait a moment and try again" + (
                ", or raise your plan's rate limit." if status == 429 else "; check the server's log."
            )
            return Retry(LlmBackendError(msg, kind=kind, status=status), retry_after(response))
        msg = f"{where} refused the request ({status}{said}). Check llm.model and llm.base_url in the config."
        return LlmBackendError(msg, kind="bad_request", status=status)

    def _server_message(self, response: httpx.Response) -> str:
        """The server's own words (OpenAI's ``error.message``, FastAPI's ``detail``), clipped and redacted."""
        try:
            body = response.json()
        except ValueError:
            body = response.text
        err = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(err, dict):
            err = err.get("message") or err.get("detail") or json.dumps(err)
        text = self._clip(str(err))
        return f": {text}" if text else ""

    def _transport_error(self, exc: Exception) -> LlmBackendError:
        where = f"the LLM server at {self.base_url}"
        if isinstance(exc, httpx.ConnectTimeout):
            return LlmBackendError(
                f"Could not reach {where}: no answer within the connect timeout. Check the address and "
                'your network, or switch to the local model (llm.backend = "local").',
                kind="connect",
            )
        if isinstance(exc, httpx.ConnectError):
            return LlmBackendError(
                f"Could not connect to {where} ({self._clip(str(exc))}). Start the server, fix llm.base_url, "
                'or switch to the local model (llm.backend = "local").',
                kind="connect",
            )
        if isinstance(exc, httpx.TimeoutException):
            return self._timeout_error(0)
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
            return LlmBackendError(
                f"The connection to {where} broke mid-reply ({self._clip(str(exc))}). Check the server's log; "
                "it may have crashed or been restarted.",
                kind="truncated",
            )
        return LlmBackendError(f"Talking to {where} failed: {self._clip(repr(exc))}.", kind="connect")


def retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None
