"""OpenAiCompatLlm against loopback servers that misbehave on purpose: each failure is clear and ends cleanly."""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
from collections.abc import Iterator

import pytest

from app.core.cancel import CancelToken
from app.core.engines import ChatMessage, LlmEngine
from app.engines.llm_openai import FallbackLlm, LlmBackendError, OpenAiCompatLlm, api_key_from_env_or_keyring
from tests.servers.fake_openai import TOKENS, FakeOpenAiServer, Step
from tests.servers.llama_server import free_port

MESSAGES = [ChatMessage("system", "You are Joe."), ChatMessage("user", "Hi there!")]
KEY = "sk-test-0123456789abcdef"
FAST = {"connect_timeout_s": 1.0, "first_token_timeout_s": 2.0, "stall_timeout_s": 0.5, "backoff_s": 0.1}


@pytest.fixture
def serve() -> Iterator:
    servers: list[FakeOpenAiServer] = []

    def start(*steps: Step, **kw) -> FakeOpenAiServer:
        servers.append(FakeOpenAiServer(*steps, **kw).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def engine(server: FakeOpenAiServer | str, model: str = "fake-model", key: str | None = KEY, **kw) -> OpenAiCompatLlm:
    url = server if isinstance(server, str) else server.base_url
    return OpenAiCompatLlm(url, model, key, **{**FAST, **kw})


def workers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "doppel-openai-llm" and t.is_alive()]


def assert_workers_end(within_s: float = 1.5) -> None:
    deadline = time.monotonic() + within_s
    while workers_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not workers_alive(), "the HTTP worker thread outlived the stream"


def fail(llm: OpenAiCompatLlm, received: list[str] | None = None) -> LlmBackendError:
    """Run a turn that must fail; return the error after checking the stream really ended."""
    received = [] if received is None else received
    with pytest.raises(LlmBackendError) as info:
        for token in llm.stream_chat(MESSAGES):
            received.append(token.text)
    assert llm.last_error == str(info.value)
    assert llm.last_stats.finish_reason == "error"
    assert KEY not in str(info.value)
    assert_workers_end()
    return info.value


def closed_free_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


# --- a good turn -----------------------------------------------------------


def test_streams_a_reply_with_server_usage(serve) -> None:
    server = serve(api_key=KEY)
    llm = engine(server)
    assert isinstance(llm, LlmEngine)
    tokens = list(llm.stream_chat(MESSAGES))
    assert "".join(t.text for t in tokens) == "".join(TOKENS)
    assert [t.index for t in tokens] == list(range(len(TOKENS)))
    body = server.chat_requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][1] == {"role": "user", "content": "Hi there!"}
    assert body["max_tokens"] == 96 and body["temperature"] == 0.6
    stats, timing = llm.last_stats, llm.last_timing
    assert (stats.backend, stats.finish_reason, stats.prompt_tokens) == ("openai", "stop", 21)
    assert stats.completion_tokens == len(TOKENS)
    assert timing.tps_source == "server usage" and stats.server_tps == timing.tps
    assert timing.ttft_ms > 0 and timing.tps > 0 and timing.latency_ms > timing.ttft_ms
    assert timing.attempts == 1
    assert_workers_end()


def test_counts_tokens_when_the_server_reports_no_usage(serve) -> None:
    llm = engine(serve(Step(usage=False)))
    assert len(list(llm.stream_chat(MESSAGES))) == len(TOKENS)
    assert llm.last_timing.tps_source == "counted" and llm.last_timing.tps > 0
    assert llm.last_stats.server_tps is None  # the observer counts LlmToken events itself
    assert llm.last_stats.completion_tokens == len(TOKENS)


def test_asks_the_server_for_its_model_when_none_is_set(serve) -> None:
    server = serve(models=("smol",))
    llm = engine(server, model="")
    assert len(list(llm.stream_chat(MESSAGES))) == len(TOKENS)
    assert llm.model == "smol" and server.chat_requests[0].body["model"] == "smol"


def test_resends_without_stream_options_when_the_server_rejects_them(serve) -> None:
    server = serve(Step(reject_stream_options=True))
    llm = engine(server, retries=0)
    assert len(list(llm.stream_chat(MESSAGES))) == len(TOKENS)
    assert ["stream_options" in r.body for r in server.chat_requests] == [True, False]
    assert llm.last_timing.tps_source == "counted"


def test_accepts_a_stream_that_ends_with_finish_reason_but_no_done(serve) -> None:
    llm = engine(serve(Step(ending="finish_only", usage=False)))
    assert len(list(llm.stream_chat(MESSAGES))) == len(TOKENS)


# --- errors before the first token -------------------------------------------


def test_wrong_key_is_a_clear_auth_error_that_never_shows_the_key(serve, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve(api_key="sk-the-right-one")
    err = fail(engine(server))
    assert err.kind == "auth" and err.status == 401
    assert "rejected the API key (401" in str(err) and "DOPPEL_API_KEY" in str(err)
    assert "***" in str(err)  # the server echoed our key; it is masked
    assert len(server.chat_requests) == 1  # a bad key is not retried
    assert KEY not in caplog.text and KEY not in repr(engine(server))


def test_missing_key_says_one_is_required(serve) -> None:
    err = fail(engine(serve(api_key=KEY), key=None, api_key_env="MY_LLM_KEY"))
    assert "requires an API key" in str(err) and "MY_LLM_KEY" in str(err)


def test_unknown_model_names_the_model_and_the_fix(serve) -> None:
    server = serve()
    err = fail(engine(server, model="gpt-nope"))
    assert err.kind == "model" and err.status == 404
    assert "'gpt-nope'" in str(err) and f"{server.base_url}/models" in str(err)
    assert len(server.chat_requests) == 1


def test_a_500_is_retried_and_then_succeeds(serve) -> None:
    server = serve(Step(status=500, message="boom"), Step())
    llm = engine(server)
    assert len(list(llm.stream_chat(MESSAGES))) == len(TOKENS)
    assert len(server.chat_requests) == 2 and llm.last_timing.attempts == 2


def test_429_backs_off_exponentially(serve) -> None:
    server = serve(Step(status=429), Step(status=429), Step())
    llm = engine(server, backoff_s=0.2)
    assert len(list(llm.stream_chat(MESSAGES))) == len(TOKENS)
    t = [r.t for r in server.chat_requests]
    assert len(t) == 3
    assert t[1] - t[0] >= 0.2 and t[2] - t[1] >= 0.4


def test_429_honours_retry_after(serve) -> None:
    server = serve(Step(status=429, retry_after="0.6"), Step())
    assert len(list(engine(server, backoff_s=0.05).stream_chat(MESSAGES))) == len(TOKENS)
    t = [r.t for r in server.chat_requests]
    assert t[1] - t[0] >= 0.6


def test_persistent_429_gives_up_after_the_retries(serve) -> None:
    server = serve(Step(status=429, message="slow down"))
    err = fail(engine(server, retries=2))
    assert err.kind == "rate_limit" and err.status == 429
    assert "rate-limiting" in str(err) and "slow down" in str(err)
    assert len(server.chat_requests) == 3


def test_persistent_503_gives_up_with_a_server_error(serve) -> None:
    server = serve(Step(status=503, message="overloaded"))
    err = fail(engine(server, retries=1))
    assert err.kind == "server" and "503" in str(err) and "server's log" in str(err)
    assert len(server.chat_requests) == 2


def test_bad_request_is_not_retried(serve) -> None:
    server = serve(Step(status=400, message="messages must alternate"))
    err = fail(engine(server))
    assert err.kind == "bad_request" and "messages must alternate" in str(err)
    assert len(server.chat_requests) == 1


@pytest.mark.parametrize("hold_headers", [False, True], ids=["headers-then-silence", "no-headers"])
def test_first_token_timeout(serve, hold_headers: bool) -> None:
    llm = engine(serve(Step(tokens=(), ending="stall", hold_headers=hold_headers)), first_token_timeout_s=0.5)
    t0 = time.perf_counter()
    err = fail(llm) if not hold_headers else _fail_quietly(llm)
    assert err.kind == "first_token_timeout" and "no reply within 0.5 s" in str(err)
    assert time.perf_counter() - t0 < 1.5
    # With no headers there is no socket to shut down yet: the worker ends on its read timeout.
    assert_workers_end(within_s=3.0)


def test_first_token_timeout_on_a_reused_connection_wakes_the_worker(serve) -> None:
    server = serve(Step(keep_alive=True), Step(tokens=(), ending="stall", hold_headers=True))
    # stall_timeout_s=5 puts the worker's own read timeout at 6 s: ending sooner proves it was woken.
    llm = engine(server, first_token_timeout_s=0.5, stall_timeout_s=5.0)
    assert len(list(llm.stream_chat(MESSAGES))) == len(TOKENS)
    t0 = time.perf_counter()
    assert fail(llm).kind == "first_token_timeout"  # fail() also checks the worker ended
    assert time.perf_counter() - t0 < 1.5
    first, second = server.chat_requests
    assert first.client_port == second.client_port  # the pool reused the connection


def _fail_quietly(llm: OpenAiCompatLlm) -> LlmBackendError:
    with pytest.raises(LlmBackendError) as info:
        list(llm.stream_chat(MESSAGES))
    return info.value


def test_connection_refused_is_quick_and_clear() -> None:
    url = closed_free_port_url()
    t0 = time.perf_counter()
    err = fail(engine(url))
    assert err.kind == "connect" and f"Could not connect to the LLM server at {url}" in str(err)
    assert "llm.base_url" in str(err)
    assert time.perf_counter() - t0 < 1.5


def test_a_page_that_is_not_an_event_stream(serve) -> None:
    err = fail(engine(serve(Step(not_a_stream=True))))
    assert err.kind == "malformed" and "did not answer with an event stream" in str(err)
    assert "application/json" in str(err)


# --- errors after the first token ------------------------------------------


def test_stall_mid_stream_fires_the_stall_timeout(serve) -> None:
    llm = engine(serve(Step(tokens=TOKENS[:3], ending="stall")), stall_timeout_s=0.5)
    received: list[str] = []
    t0 = time.perf_counter()
    err = fail(llm, received)
    assert received == list(TOKENS[:3])
    assert err.kind == "stall" and "nothing for 0.5 s after 3 tokens" in str(err)
    assert time.perf_counter() - t0 < 1.5


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
def test_truncated_stream(serve, chunked: bool) -> None:
    received: list[str] = []
    err = fail(engine(serve(Step(tokens=TOKENS[:4], ending="close", chunked=chunked))), received)
    assert received == list(TOKENS[:4])
    assert err.kind == "truncated" and "server's log" in str(err)


def test_malformed_json_in_a_data_line(serve) -> None:
    received: list[str] = []
    err = fail(engine(serve(Step(tokens=TOKENS[:2], ending="malformed"))), received)
    assert received == list(TOKENS[:2])
    assert err.kind == "malformed" and "malformed stream chunk" in str(err) and '"oops"' in str(err)


def test_error_reported_inside_the_stream(serve) -> None:
    err = fail(engine(serve(Step(tokens=TOKENS[:2], ending="error_chunk"))))
    assert err.kind == "server" and "out of memory" in str(err)


# --- cancellation ----------------------------------------------------------


def test_cancel_stops_within_one_token_and_hangs_up(serve) -> None:
    server = serve(Step(tokens=TOKENS * 10, token_delay_s=0.02))
    llm = engine(server)
    cancel = CancelToken()
    received = []
    for token in llm.stream_chat(MESSAGES, cancel):
        received.append(token.text)
        if len(received) == 3:
            cancel.cancel("barge-in")
    assert len(received) == 3 and llm.last_stats.finish_reason == "cancelled"
    assert_workers_end()
    deadline = time.monotonic() + 2
    while not server.chat_requests[0].client_gone and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.chat_requests[0].client_gone, "the server kept streaming to a cancelled turn"


def test_cancel_while_the_server_is_silent_returns_at_once(serve) -> None:
    llm = engine(serve(Step(tokens=(), ending="stall")), first_token_timeout_s=5.0)
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel).start()
    t0 = time.perf_counter()
    assert list(llm.stream_chat(MESSAGES, cancel)) == []
    assert time.perf_counter() - t0 < 1.0 and llm.last_stats.finish_reason == "cancelled"
    assert_workers_end()


def test_abandoning_the_generator_ends_the_request(serve) -> None:
    llm = engine(serve(Step(tokens=TOKENS * 10, token_delay_s=0.02)))
    stream = llm.stream_chat(MESSAGES)
    next(stream)
    stream.close()
    assert_workers_end()


# --- fallback --------------------------------------------------------------


def test_fallback_when_the_primary_is_down(serve) -> None:
    good = serve()
    primary, backup = engine(closed_free_port_url()), engine(good)
    llm = FallbackLlm(primary, backup)
    assert isinstance(llm, LlmEngine)
    assert len(list(llm.stream_chat(MESSAGES))) == len(TOKENS)
    assert llm.last_stats.backend == "local (fallback)" and llm.used_fallback
    assert "Could not connect" in llm.last_error


def test_fallback_skips_a_failed_primary_for_a_while(serve) -> None:
    bad, good = serve(Step(status=401)), serve()
    llm = FallbackLlm(engine(bad, retries=0), engine(good), retry_primary_after_s=60)
    for _ in range(2):
        assert len(list(llm.stream_chat(MESSAGES))) == len(TOKENS)
    assert len(bad.chat_requests) == 1 and len(good.chat_requests) == 2
    assert "(401" in llm.last_error


def test_no_fallback_once_the_primary_has_spoken(serve) -> None:
    bad, good = serve(Step(tokens=TOKENS[:2], ending="close")), serve()
    llm = FallbackLlm(engine(bad), engine(good))
    with pytest.raises(LlmBackendError, match=r"closed|broke"):
        list(llm.stream_chat(MESSAGES))
    assert not good.chat_requests


def test_no_fallback_when_the_turn_is_cancelled_before_the_first_token(serve) -> None:
    silent, good = serve(Step(tokens=(), ending="stall")), serve()
    llm = FallbackLlm(engine(silent, first_token_timeout_s=5.0), engine(good))
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel).start()
    assert list(llm.stream_chat(MESSAGES, cancel)) == []
    assert not good.chat_requests and not llm.used_fallback and llm.last_error == ""


def test_primary_success_reports_the_primary(serve) -> None:
    llm = FallbackLlm(engine(serve()), engine(closed_free_port_url()))
    list(llm.stream_chat(MESSAGES))
    assert llm.last_stats.backend == "openai" and not llm.used_fallback and llm.last_error == ""


# --- keys ------------------------------------------------------------------


def test_key_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("DOPPEL_TEST_KEY", "  sk-env  ")
    assert api_key_from_env_or_keyring("DOPPEL_TEST_KEY") == "sk-env"


def test_key_from_the_keyring_when_the_environment_has_none(monkeypatch) -> None:
    calls = []
    fake = types.SimpleNamespace(get_password=lambda service, user: calls.append((service, user)) or "sk-ring")
    monkeypatch.setitem(sys.modules, "keyring", fake)
    monkeypatch.delenv("DOPPEL_TEST_KEY", raising=False)
    assert api_key_from_env_or_keyring("DOPPEL_TEST_KEY") == "sk-ring"
    assert calls == [("doppel", "DOPPEL_TEST_KEY")]


def test_no_key_when_the_keyring_is_missing_or_broken(monkeypatch) -> None:
    monkeypatch.delenv("DOPPEL_TEST_KEY", raising=False)
    monkeypatch.setitem(sys.modules, "keyring", None)  # import fails
    assert api_key_from_env_or_keyring("DOPPEL_TEST_KEY") is None

    def broken(service: str, user: str) -> str:
        raise RuntimeError("no backend")

    monkeypatch.setitem(sys.modules, "keyring", types.SimpleNamespace(get_password=broken))
    assert api_key_from_env_or_keyring("DOPPEL_TEST_KEY") is None


def test_count_tokens_is_about_four_characters_each() -> None:
    llm = engine(closed_free_port_url())
    n = llm.count_tokens([ChatMessage("user", "x" * 400)])
    assert 100 <= n <= 110
