"""What passes between the conversation's stage workers, and the engines they need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.core.cancel import CancelToken
from app.core.engines import AsrEngine, LlmEngine, SpeechChunk, Transcript, TtsEngine
from app.core.listener import Utterance
from app.core.turn import Turn


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
    """ASR + LLM prefill started at the first silent frame, kept if the user stays quiet."""

    turn_id: int
    cancel: CancelToken
    transcript: Transcript | None = None


@dataclass(frozen=True)
class AsrJob:
    turn_id: int
    utterance: Utterance
    speculation: Speculation | None  # set: this job *is* speculative work
    reuse: Speculation | None = None  # set: commit, reusing that speculation's transcript


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
