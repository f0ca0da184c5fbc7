"""One conversational exchange: its id, cancel handle and playout accounting."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from app.core.cancel import CancelToken
from app.core.engines import SpeechChunk
from app.core.outbox import Outbox


@dataclass
class Segment:
    """A piece of reply audio as queued to the speaker, and the text it speaks."""

    text_index: int
    n_samples: int
    chunk: SpeechChunk | None = None  # what the face was given, so a paused reply's lips can resume with it


@dataclass
class Turn:
    """The handle for a turn: cancel it, and ask what was actually heard.

    Like a speech handle, it is both the cancel token and the record of
    playout, so barge-in can keep exactly the played part in the history.
    """

    id: int
    user_text: str = ""
    fixed_reply: str = ""  # said instead of the LLM's reply (asking again after a doubted hearing)
    cancel: CancelToken = field(default_factory=CancelToken)
    texts: list[str] = field(default_factory=list)  # chunk texts as sent to TTS
    segments: list[Segment] = field(default_factory=list)
    llm_pieces: list[str] = field(default_factory=list)  # the reply as generated so far
    tts_done: bool = False  # every chunk was synthesized and queued
    finished: threading.Event = field(default_factory=threading.Event)
    first_audio_ready: threading.Event = field(default_factory=threading.Event)  # TTS made the first audio
    first_audio_played: bool = False
    paused: bool = False  # held by the user's voice until the listener decides: backchannel or interruption
    # Called on the LLM thread with P(end of turn) after the user's words, before the reply is generated.
    end_cue: Callable[[float | None], None] | None = None
    synthesized_s: float = 0.0  # reply audio made so far (the CPU plan compares it with what was played)
    first_frame_shown: bool = False
    interrupted: bool = False
    error: str = ""
    outbox: Outbox = field(default_factory=Outbox)  # held while the turn is speculative

    def log_record(self, heard: str, backend: str, backend_error: str, metrics: dict) -> dict:
        """One line of the conversation log: what was said, heard, and how fast."""
        return {
            "turn_id": self.id,
            "user": self.user_text,
            "reply": heard,
            "generated": self.llm_text,
            "interrupted": self.interrupted,
            "cancel_reason": self.cancel.reason,
            "error": self.error or backend_error,
            "backend": backend,
            "metrics": metrics,
        }

    @property
    def llm_text(self) -> str:
        return "".join(self.llm_pieces).strip()

    def played_text(self, played_samples: list[int]) -> str:
        """The reply as heard: whole chunks played, plus the heard share of a cut one."""
        total: dict[int, int] = {}
        played: dict[int, int] = {}
        for seg, n_played in zip(self.segments, played_samples, strict=True):
            total[seg.text_index] = total.get(seg.text_index, 0) + seg.n_samples
            played[seg.text_index] = played.get(seg.text_index, 0) + n_played
        parts: list[str] = []
        for index, text in enumerate(self.texts):
            if not total.get(index) or not played.get(index):
                break
            share = played[index] / total[index]
            if share >= 0.98:
                parts.append(text)
                continue
            words = text.split()
            heard = round(len(words) * share)
            if heard:
                parts.append(" ".join(words[:heard]) + "…")
            break
        return " ".join(parts)


_LAST_SENTENCE_END = re.compile(r".*[.!?]", re.S)


def heard_for_history(heard: str) -> str:
    """What the LLM is told it said: a cut reply up to its last whole sentence, with no "…" marker.

    "" when no whole sentence was heard: that exchange is left out of the LLM's
    history (the transcript and the log still show it, "…" and all).  A 135M
    model shown cut replies or fragments in its own history imitates them: in
    bench runs every later reply became "The answer is…" or the four words
    "The perfect holiday in".
    """
    if not heard.endswith("…"):
        return heard
    whole = _LAST_SENTENCE_END.match(heard[: -len("…")].rstrip())
    return whole.group(0) if whole else ""
