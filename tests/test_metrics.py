"""The metrics observer against a recorded event sequence with hand-checked numbers."""

from __future__ import annotations

import pytest

from app.core import events as ev
from app.core.metrics import MetricsObserver, llm_latency_ms

MS = 1_000_000


def test_observer_computes_seed_metrics_from_events() -> None:
    updates: list[ev.TurnMetrics] = []
    observer = MetricsObserver(on_update=updates.append)
    t0 = 1_000 * MS
    recorded: list[ev.Event] = [
        ev.SpeechEnded(7, voice_end_ns=t0, t_ns=t0 + 250 * MS),
        ev.TranscriptFinal(7, "hello", asr_ms=180.0, t_ns=t0 + 300 * MS),
        ev.LlmRequest(7, t_ns=t0 + 310 * MS),
    ]
    # 11 tokens: first at +410 ms (TTFT 100 ms), then one every 20 ms -> 10 tokens in 200 ms = 50 TPS.
    recorded += [ev.LlmToken(7, "x", i, t_ns=t0 + (410 + 20 * i) * MS) for i in range(11)]
    recorded += [
        ev.TtsChunkQueued(7, "Hi there,", 0, t_ns=t0 + 470 * MS),
        ev.TtsAudio(7, 0, 22050, 22050, t_ns=t0 + 610 * MS),
        ev.AudioPlayed(7, 0, t_ns=t0 + 640 * MS),
        ev.ReplicaFrame(7, 0, t_ns=t0 + 650 * MS),
        ev.LlmDone(7, "x" * 11, 11, t_ns=t0 + 615 * MS),
        ev.TurnEnded(7, t_ns=t0 + 2000 * MS),
    ]
    for event in recorded:
        observer(event)
    m = observer.compute(7)
    assert m["vad_end_of_turn_ms"] == pytest.approx(250)
    assert m["asr_ms"] == pytest.approx(180)
    assert m["asr_final_ms"] == pytest.approx(300)
    assert m["ttft_ms"] == pytest.approx(100)
    assert m["tps"] == pytest.approx(50)
    assert m["llm_latency_ms"] == pytest.approx(20 / 50 * 1000 + 100)  # 500 ms
    assert m["first_chunk_to_tts_ms"] == pytest.approx(160)
    assert m["tts_first_audio_ms"] == pytest.approx(140)
    assert m["speech_end_to_first_audio_ms"] == pytest.approx(640)
    assert m["speech_end_to_first_frame_ms"] == pytest.approx(650)
    assert m["n_tokens"] == 11
    assert updates and updates[-1].values["final"] == 1.0
    assert updates[-1].turn_id == 7


def test_seed_reference_rows() -> None:
    assert llm_latency_ms(300, 33) == pytest.approx(906, abs=1)  # Tavus before
    assert llm_latency_ms(100, 100) == pytest.approx(300)  # Tavus with Cerebras
    assert llm_latency_ms(440, 2000) == pytest.approx(450)  # Cerebras Llama-3.1-8B
    assert llm_latency_ms(None, 50) is None
    assert llm_latency_ms(100, 0) is None


def test_server_reported_tps_wins_over_counted() -> None:
    observer = MetricsObserver()
    observer(ev.LlmRequest(1, t_ns=0))
    observer(ev.LlmToken(1, "a", 0, t_ns=50 * MS))
    observer(ev.LlmToken(1, "b", 1, t_ns=60 * MS))
    assert observer.compute(1)["tps"] == pytest.approx(100)
    observer(ev.LlmDone(1, "ab", 2, server_tps=250.0, t_ns=70 * MS))
    assert observer.compute(1)["tps"] == pytest.approx(250)


def test_typed_turn_starts_its_clock_at_the_text() -> None:
    observer = MetricsObserver()
    observer(ev.UserText(3, "hi", t_ns=10 * MS))
    observer(ev.AudioPlayed(3, 0, t_ns=400 * MS))
    assert observer.compute(3)["speech_end_to_first_audio_ms"] == pytest.approx(390)
    assert observer.compute(99)["ttft_ms"] is None


def test_tps_leaves_out_the_pause_for_first_audio_and_the_twentieth_token_is_measured() -> None:
    observer = MetricsObserver()
    observer(ev.LlmRequest(5, t_ns=0))
    # 5 tokens every 10 ms from 10 ms, a 300 ms pause for Piper, then 20 more every 10 ms.
    stamps = [10 + 10 * i for i in range(5)] + [350 + 10 * i for i in range(20)]
    for i, t in enumerate(stamps[:5]):
        observer(ev.LlmToken(5, "x", i, t_ns=t * MS))
    observer(ev.LlmYielded(5, paused_ms=300.0, t_ns=350 * MS))
    for i, t in enumerate(stamps[5:], start=5):
        observer(ev.LlmToken(5, "x", i, t_ns=t * MS))
    m = observer.compute(5)
    # span 10 -> 540 ms = 530 ms, less the 300 ms pause = 230 ms for 24 tokens
    assert m["tps"] == pytest.approx(24 / 0.230)
    assert m["llm_yield_ms"] == pytest.approx(300)
    assert m["twentieth_token_ms"] == pytest.approx(stamps[19])  # measured, the pause included
    assert m["llm_latency_ms"] == pytest.approx(20 / m["tps"] * 1000 + 10)


def test_tps_also_leaves_out_waits_for_later_sentences_and_shows_them_apart() -> None:
    observer = MetricsObserver()
    observer(ev.LlmRequest(6, t_ns=0))
    # 3 tokens every 10 ms, 100 ms for the first clause, 3 more, 200 ms while sentence 2 is synthesized, 3 more.
    stamps = [10, 20, 30, 130, 140, 150, 350, 360, 370]
    for i, t in enumerate(stamps):
        if t == 130:
            observer(ev.LlmYielded(6, paused_ms=90.0, t_ns=120 * MS))
        if t == 350:
            observer(ev.LlmYielded(6, paused_ms=190.0, for_first_clause=False, t_ns=340 * MS))
        observer(ev.LlmToken(6, "x", i, t_ns=t * MS))
    m = observer.compute(6)
    assert m["tps"] == pytest.approx(8 / (0.360 - 0.090 - 0.190))  # 80 ms of decoding for 8 tokens
    assert m["llm_yield_ms"] == pytest.approx(90)
    assert m["llm_tts_wait_ms"] == pytest.approx(190)
    observer(ev.LlmRequest(7, t_ns=0))
    assert observer.compute(7)["llm_tts_wait_ms"] is None  # no wait: nothing to show
