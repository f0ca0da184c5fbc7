"""Typed messages that flow through the conversation pipeline.

Every event is a frozen dataclass carrying the ``turn_id`` it belongs to and a
monotonic timestamp (``time.perf_counter_ns``).  Whether an event survives a
barge-in is part of its type: ``ControlEvent`` subclasses are never dropped,
``DataEvent`` subclasses of a cancelled turn are discarded downstream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


def now_ns() -> int:
    """The one clock every stage uses: monotonic, nanoseconds."""
    return time.perf_counter_ns()


class AgentState(StrEnum):
    """What the UI shows: the replica is idle, listening, thinking or speaking."""

    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass(frozen=True)
class Event:
    turn_id: int
    t_ns: int = field(default_factory=now_ns, kw_only=True)


@dataclass(frozen=True)
class ControlEvent(Event):
    """Never dropped on interruption (state changes, errors, metrics)."""


@dataclass(frozen=True)
class DataEvent(Event):
    """Payload of a turn; dropped once that turn is cancelled."""


# --- user side -----------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted(ControlEvent):
    """VAD saw voice onset."""


@dataclass(frozen=True)
class SpeechEnded(ControlEvent):
    """VAD decided the user finished.

    ``voice_end_ns`` is the true end of voiced audio (the last voiced frame, or
    for files the end known from the file); ``t_ns`` is when the VAD decided.
    """

    voice_end_ns: int


@dataclass(frozen=True)
class TranscriptFinal(DataEvent):
    text: str
    asr_ms: float = 0.0
    speculative_reused: bool = False
    not_a_turn: str = ""  # why it gets no reply (filler, no words, doubted), "" for a real turn


@dataclass(frozen=True)
class UserText(DataEvent):
    """A typed message, handled exactly like a spoken transcript."""

    text: str


# --- replica side --------------------------------------------------------


@dataclass(frozen=True)
class LlmRequest(DataEvent):
    """The prompt was handed to the LLM (TTFT counts from here)."""

    backend: str = "local"
    prompt_tokens: int = 0
    evaluated_tokens: int = 0


@dataclass(frozen=True)
class LlmToken(DataEvent):
    text: str
    index: int


@dataclass(frozen=True)
class LlmYielded(DataEvent):
    """The LLM stood aside (``paused_ms``) for TTS (the first clause, a later sentence) or the face's frames.

    TPS is the LLM's speed while it runs, so these pauses are taken out of it and
    shown on their own.
    """

    paused_ms: float
    for_first_clause: bool = True
    for_face: bool = False  # the face rendered a burst of frames ahead (app/core/cpu_plan.py)


@dataclass(frozen=True)
class LlmDone(DataEvent):
    text: str
    n_tokens: int
    server_tps: float | None = None


@dataclass(frozen=True)
class TtsChunkQueued(DataEvent):
    """A text chunk was handed to TTS."""

    text: str
    index: int


@dataclass(frozen=True)
class TtsAudio(DataEvent):
    """TTS produced audio for a chunk."""

    chunk_index: int
    n_samples: int
    sample_rate: int


@dataclass(frozen=True)
class AudioPlayed(DataEvent):
    """The output device actually played the first sample of a chunk."""

    chunk_index: int


@dataclass(frozen=True)
class ReplicaFrame(DataEvent):
    """The replica rendered a frame with speech in it."""

    frame_index: int


@dataclass(frozen=True)
class ReplyText(DataEvent):
    """Text of the reply as actually spoken so far (for the transcript)."""

    text: str


# --- lifecycle -----------------------------------------------------------


@dataclass(frozen=True)
class StateChanged(ControlEvent):
    state: AgentState


@dataclass(frozen=True)
class TurnInterrupted(ControlEvent):
    """Barge-in: the user spoke over the reply."""

    played_text: str


@dataclass(frozen=True)
class BargeIn(ControlEvent):
    """Playback was cut: ``onset_ns`` is the user's voice onset, ``silent_ns`` when output fell silent."""

    onset_ns: int
    silent_ns: int


@dataclass(frozen=True)
class TurnJudged(ControlEvent):
    """At the end of a pause, the turn model's verdict: ``complete`` ends the turn, else it waits ``wait_ms``."""

    complete: bool
    reason: str
    wait_ms: int
    p_llm: float | None = None


@dataclass(frozen=True)
class FragmentMerged(ControlEvent):
    """A held fragment ("so I was thinking about") became the start of the next utterance's turn."""

    text: str


@dataclass(frozen=True)
class ReplyPaused(ControlEvent):
    """The user's voice paused the reply (``turn_id``) at ``silent_ns``; it resumes if they only said "mm-hmm"."""

    onset_ns: int
    silent_ns: int


@dataclass(frozen=True)
class ReplyResumed(ControlEvent):
    """A backchannel: the paused reply goes on from the sample it stopped at."""

    text: str
    paused_ms: float


@dataclass(frozen=True)
class TurnEnded(ControlEvent):
    interrupted: bool = False


@dataclass(frozen=True)
class TurnMetrics(ControlEvent):
    """Computed by the metrics observer, never by a stage."""

    values: dict[str, float | None]


@dataclass(frozen=True)
class ErrorEvent(ControlEvent):
    """Something failed; ``message`` says what and how to fix it."""

    source: str
    message: str
