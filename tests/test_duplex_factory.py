"""make_duplex: echo cancellation when the WebRTC binding loads, half duplex otherwise."""

from __future__ import annotations

import pytest

from app.core.audio_io import WavWriterSink
from app.duplex import HALF_DUPLEX_NO_AEC, DuplexOptions, EchoCanceller, make_duplex, webrtc_available


@pytest.mark.skipif(not webrtc_available(), reason="the WebRTC APM binding (pip install livekit) is not installed")
def test_factory_picks_aec_and_taps_the_playout() -> None:
    sink = WavWriterSink(None, 22_050)
    duplex = make_duplex(sink)
    mic_filter, gate, half_duplex, description = duplex
    assert isinstance(mic_filter, EchoCanceller) and gate is not None and not half_duplex
    assert description.startswith("Echo cancellation: WebRTC APM")
    assert sink.buffer.taps == [mic_filter.tap]
    assert duplex.conversation_kwargs()["mic_filter"] is mic_filter


def test_factory_falls_back_to_half_duplex(monkeypatch) -> None:
    sink = WavWriterSink(None, 22_050)
    off = make_duplex(sink, DuplexOptions(echo_cancellation=False))
    assert off.half_duplex and off.mic_filter is None and "off" in off.description
    assert make_duplex(sink, DuplexOptions(headphones=True)).half_duplex is False
    assert make_duplex(None).mic_filter is None

    class BareSink:
        name, sample_rate = "bare", 22_050

    assert make_duplex(BareSink()).half_duplex  # type: ignore[arg-type]
    monkeypatch.setattr("app.duplex.webrtc_available", lambda: False)
    fallback = make_duplex(sink)
    assert fallback.half_duplex and fallback.description == HALF_DUPLEX_NO_AEC
    assert sink.buffer.taps == []
