"""OpenAiCompatLlm against a real llama_cpp.server on loopback, serving the bundled SmolLM2."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core import events as ev
from app.core.cancel import CancelToken
from app.core.engines import ChatMessage
from app.core.metrics import MetricsObserver
from app.engines.llm_openai import FallbackLlm, LlmBackendError, OpenAiCompatLlm
from tests.servers.llama_server import LlamaServer, free_port, missing_server_modules

pytestmark = pytest.mark.slow

KEY = "sk-doppel-test-key"
MESSAGES = [
    ChatMessage("system", "You are Joe, a warm and curious person. Reply in two or three sentences."),
    ChatMessage("user", "Tell me about the place where you grew up."),
]


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    missing = missing_server_modules()
    if missing:
        pytest.skip(
            f"llama_cpp.server needs {', '.join(missing)}: "
            "pip install fastapi uvicorn sse-starlette starlette-context pydantic-settings"
        )
    from app.model_registry import resolve

    srv = LlamaServer(resolve("llm"), threads=2, n_ctx=2048, api_key=KEY)
    yield srv
    srv.stop()


def remote(server: LlamaServer, key: str | None = KEY, **kw) -> OpenAiCompatLlm:
    options = {"max_tokens": 48, "temperature": 0.0, "first_token_timeout_s": 60.0, "stall_timeout_s": 30.0}
    return OpenAiCompatLlm(server.base_url, "", key, **{**options, **kw})


def test_a_full_turn_streams_with_metrics(server: LlamaServer) -> None:
    llm = remote(server)
    observer = MetricsObserver()
    observer(ev.LlmRequest(1, backend=llm.name))
    tokens = []
    for token in llm.stream_chat(MESSAGES):
        tokens.append(token)
        observer(ev.LlmToken(1, text=token.text, index=token.index))
    text = "".join(t.text for t in tokens)
    observer(ev.LlmDone(1, text=text, n_tokens=len(tokens), server_tps=llm.last_stats.server_tps))

    assert len(tokens) >= 10 and text.strip()
    assert llm.model  # discovered from /v1/models
    stats, timing = llm.last_stats, llm.last_timing
    assert stats.backend == "openai" and stats.finish_reason in ("stop", "length")
    assert stats.completion_tokens >= 10
    assert timing.ttft_ms > 0 and timing.tps > 0 and timing.tps_source
    assert timing.latency_ms == pytest.approx(20 / timing.tps * 1000 + timing.ttft_ms)
    values = observer.compute(1)  # the HUD's numbers, from events, agree in kind
    assert values["ttft_ms"] > 0 and values["tps"] > 0 and values["llm_latency_ms"] > values["ttft_ms"]
    llm.close()


def test_the_real_server_rejects_a_wrong_key(server: LlamaServer) -> None:
    llm = remote(server, key="sk-wrong")
    with pytest.raises(LlmBackendError) as info:
        list(llm.stream_chat(MESSAGES))
    assert info.value.kind == "auth" and "DOPPEL_API_KEY" in str(info.value)
    assert "sk-wrong" not in str(info.value)


def test_cancel_mid_reply_then_the_next_turn_works(server: LlamaServer) -> None:
    llm = remote(server, max_tokens=64)
    cancel = CancelToken()
    received = []
    for token in llm.stream_chat(MESSAGES, cancel):
        received.append(token)
        if len(received) == 3:
            cancel.cancel("barge-in")
    assert len(received) == 3 and llm.last_stats.finish_reason == "cancelled"
    assert len(list(llm.stream_chat(MESSAGES))) >= 10


def test_falls_back_when_the_primary_server_is_down(server: LlamaServer) -> None:
    primary = OpenAiCompatLlm(f"http://127.0.0.1:{free_port()}/v1", "any", KEY, connect_timeout_s=1.0)
    llm = FallbackLlm(primary, remote(server))
    tokens = list(llm.stream_chat(MESSAGES))
    assert len(tokens) >= 10
    assert llm.last_stats.backend == "local (fallback)"
    assert llm.last_stats.completion_tokens >= 10
    assert "Could not connect" in llm.last_error
