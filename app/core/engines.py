"""The small interfaces every engine implements; the core depends only on these."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from app.core.cancel import NEVER_CANCELLED, CancelToken

ASR_SAMPLE_RATE = 16_000


# --- ASR -------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    segments: tuple[Segment, ...] = ()
    audio_s: float = 0.0
    compute_ms: float = 0.0
    # Mean log-probability per token, when the engine knows it: how much the decoder trusts its text.
    mean_logprob: float | None = None
    doubtful: bool = False  # the engine flagged it (a loop, a decode cut at its length bound)
    # How sure the decoder is of the last word (its least likely token), when the engine measured it:
    # a word cut short by a pause is often misheard ("do you put..." heard as "do you port?").
    last_word_p: float | None = None
    engine: str = ""
    draft: tuple[int, ...] = ()  # the engine's own token ids, to seed a decode of the same, longer utterance


@runtime_checkable
class AsrEngine(Protocol):
    def transcribe(self, pcm16k: np.ndarray, cancel: CancelToken = NEVER_CANCELLED) -> Transcript:
        """Transcribe float32 mono PCM at 16 kHz."""
        ...


# --- LLM -------------------------------------------------------------------

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class Token:
    text: str
    index: int


@dataclass
class GenerationStats:
    """Filled in by the engine while it streams (the observer uses events, not this)."""

    prompt_tokens: int = 0
    evaluated_tokens: int = 0  # prompt tokens not found in the KV cache
    completion_tokens: int = 0
    reply_ids: list[int] = field(default_factory=list)  # the reply's token ids, where the backend has them
    server_tps: float | None = None
    finish_reason: str = ""
    backend: str = "local"
    error: str = ""  # why a remote backend was bypassed (shown in the HUD)


@runtime_checkable
class LlmEngine(Protocol):
    name: str
    context_tokens: int
    last_stats: GenerationStats

    def stream_chat(self, messages: Sequence[ChatMessage], cancel: CancelToken = NEVER_CANCELLED) -> Iterator[Token]:
        """Yield reply tokens; stops between tokens when ``cancel`` fires."""
        ...

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt size of ``messages`` (for history trimming)."""
        ...


# --- TTS -------------------------------------------------------------------


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme and where its audio lies in the chunk, in samples."""

    phoneme: str
    start: int
    length: int


@dataclass(frozen=True)
class SpeechChunk:
    audio: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    text: str = ""
    phonemes: tuple[PhonemeTiming, ...] = field(default=())
    continues: bool = False  # the rest of the previous chunk's sentence (a voice vocoding in pieces)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    def tail(self, start: int) -> SpeechChunk:
        """The chunk from sample ``start`` on, phonemes shifted with it (a paused reply resumes from here)."""
        start = max(0, min(start, len(self.audio)))
        phonemes = tuple(
            PhonemeTiming(p.phoneme, max(p.start - start, 0), p.length - max(start - p.start, 0))
            for p in self.phonemes
            if p.start + p.length > start
        )
        return SpeechChunk(self.audio[start:], self.sample_rate, self.text, phonemes, self.continues)


@runtime_checkable
class TtsEngine(Protocol):
    sample_rate: int

    def synthesize(self, text: str, cancel: CancelToken = NEVER_CANCELLED) -> Iterator[SpeechChunk]:
        """Yield audio sentence by sentence, with phoneme timing when known."""
        ...


@runtime_checkable
class TurnEndModel(Protocol):
    """An audio model of the end of a turn (Smart Turn): does the voice sound finished?"""

    def complete_probability(self, audio: np.ndarray) -> float:
        """P(the user has finished) from the utterance so far, 16 kHz mono float32."""
        ...
