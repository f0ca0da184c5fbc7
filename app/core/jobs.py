"""What passes between the conversation's stage workers, and the engines they need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.core.cancel import CancelToken
from app.core.engines import AsrEngine, LlmEngine, SpeechChunk, Transcript, TtsEngine
from app.core.listener import Utterance
from app.core.turn import Turn
from app.core.turn_model import EndJudgement


class EngineSet(Protocol):
    asr: AsrEngine | None
    llm: LlmEngine
    tts: TtsEngine


class Face(Protocol):
    """The replica as the pipeline sees it (a consumer of timed speech audio)."""

    def push_audio(self, chunk: SpeechChunk, start_ns: int) -> None: ...

    def clear_buffer(self) -> None: ...


@dataclass
class Speculation:
    """A reply started at the first silent frame, its output held until the turn ends.

    ``transcript`` is set by the ASR worker, ``ended`` by the VAD's end of turn;
    whichever comes second commits the turn.  If the user resumes, ``cancel``
    fires and nothing of it is ever shown or heard.
    """

    turn_id: int
    cancel: CancelToken
    transcript: Transcript | None = None
    transcript_ns: int = 0  # when the transcript was ready
    turn: Turn | None = None  # the held reply, once the transcript has words
    not_a_turn: str = ""  # why the transcript gets no reply (app.core.fillers), "" when it does
    ended: Utterance | None = None  # the whole utterance, once the VAD ended the turn
    judgement: EndJudgement | None = None  # the turn model's verdict, once its cues are in
    settled: bool = False  # committed or held: decided once


@dataclass(frozen=True)
class AsrJob:
    turn_id: int
    utterance: Utterance
    speculation: Speculation | None = None  # set: this job *is* speculative work
    # set: a decode of the utterance so far while the user speaks (its draft seeds the final); the
    # token cancels it when the user pauses, so it never delays the transcript the reply waits for
    partial: CancelToken | None = None


@dataclass(frozen=True)
class LlmJob:
    turn: Turn | None
    user_text: str
    prefill_only: CancelToken | None = None


@dataclass(frozen=True)
class TtsJob:
    turn: Turn
    index: int  # -1: end of the reply
    text: str = ""
