"""A whole conversation against its own echo: real engines, real-time playout, a simulated room.

The microphone hears the replica's reply through the room. With the
canceller from ``make_duplex`` the replica talks on undisturbed until the
user really speaks, and then the barge-in fires on the user's voice.
"""

from __future__ import annotations

import threading
import time

import pytest

from app.core import events as ev
from app.core.audio_io import SourceItem, WavWriterSink
from app.core.conversation import Conversation
from app.core.history import JsonlLog
from app.duplex import DuplexOptions, EchoCanceller, make_duplex, webrtc_available
from app.duplex.room import Room, RoomMic

pytestmark = pytest.mark.skipif(not webrtc_available(), reason="the WebRTC APM binding (livekit) is not installed")

ROOM = Room(delay_ms=60.0, rt60_ms=150.0, gain=0.1)  # a speaker at arm's length in a furnished room
REPLICA_ALONE_S = 3.0  # the replica talks this long over its own echo before the user cuts in


class Events:
    def __init__(self) -> None:
        self.items: list[ev.Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        with self.lock:
            self.items.append(event)

    def of(self, kind: type) -> list:
        with self.lock:
            return [e for e in self.items if isinstance(e, kind)]


def test_echo_does_not_interrupt_the_replica_but_the_user_does(config, engines, speak16k, tmp_path) -> None:
    events = Events()

    def replica_spoke_a_while() -> bool:
        played = events.of(ev.AudioPlayed)
        return bool(played) and time.perf_counter_ns() - played[0].t_ns > REPLICA_ALONE_S * 1e9

    sink = WavWriterSink(None, engines.tts.sample_rate)
    duplex = make_duplex(sink, DuplexOptions(mouth_gate=False))
    assert isinstance(duplex.mic_filter, EchoCanceller), duplex.description
    question = speak16k("Sorry, what time is it?")
    mic = RoomMic(ROOM, sink.sample_rate, [SourceItem(question, replica_spoke_a_while)])
    sink.buffer.taps.append(mic.tap)
    conversation = Conversation(
        config, engines, source=mic, sink=sink, log=JsonlLog(tmp_path / "t.jsonl"), **duplex.conversation_kwargs()
    )
    conversation.bus.subscribe(events)
    conversation.start()
    sampling = engines.llm.sampling
    engines.llm.sampling = {**sampling, "temp": 0.0}  # greedy: a sampled one-line "story" left no time to cut in
    try:
        conversation.say("Tell me a long story about a brave knight and a dragon.")
        deadline = time.monotonic() + 45
        while not events.of(ev.TurnInterrupted) and time.monotonic() < deadline:
            if events.of(ev.TurnEnded):
                break  # the reply ended on its own: the user never got through
            time.sleep(0.05)
    finally:
        engines.llm.sampling = sampling
        assert conversation.shutdown(timeout=10.0)  # ASR may be mid-utterance; it is not cancellable
    assert mic.voice_spans_ns, "the replica never spoke long enough for the user to cut in"
    user_start = mic.voice_spans_ns[0][0]
    starts = events.of(ev.SpeechStarted)
    barge = events.of(ev.BargeIn)
    print(f"\nonsets after user start: {[(s.t_ns - user_start) / 1e6 for s in starts]} ms; {duplex.description}")
    assert all(s.t_ns >= user_start - 50_000_000 for s in starts), "the replica's echo was taken for the user"
    # Double talk: the canceller may swallow the first word, but the barge-in lands while the user speaks.
    assert len(barge) == 1 and barge[0].onset_ns - user_start < len(question) / 16_000 * 1e9
    assert duplex.mic_filter.starved_chunks < 20
