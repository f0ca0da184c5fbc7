"""The turn-taking bench's spoken set: complete questions, hesitations, backchannels, interruptions.

Phrases and voices of its own (none shared with the tuning questions or the
held-out set): the hesitations pause 0.4-1.2 s after an unfinished opening;
backchannels and interruptions are spoken while the replica answers a lead
question. Clips are ``Question`` entries, so ``ensure_audio`` makes and caches
them like the bench's other inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.bench.questions import RATE, Question

Kind = Literal["complete", "hesitation", "backchannel", "interruption"]
_VOICES = (
    "espeak:en-gb-x-gbclan:165",
    "piper:0.9",
    "espeak:en-us+f3:170",
    "espeak:en-gb-x-gbcwmd+m2:155",
    "piper:1.15",
    "espeak:en-us-nyc+m4:180",
)

_COMPLETE = (
    "What's a good name for a black cat?",
    "How long should I boil an egg?",
    "Can you recommend a book about space?",
    "Where do penguins live?",
    "How do I fix a squeaky door?",
    "Tell me a fun fact about octopuses.",
    "What should I pack for a beach trip?",
    "Is it better to run in the morning or in the evening?",
    "How many legs does a spider have?",
    "Why do cats purr?",
    "What can I cook with potatoes and cheese?",
    "I'd like some advice on growing tomatoes.",
)
# (opening, rest, pause in seconds)
_HESITATIONS = (
    ("So I've been thinking about", "getting a dog. Which breed suits a small flat?", 0.6),
    ("My sister wants to know whether", "you can make pancakes without eggs.", 0.9),
    ("Could you tell me, um,", "how far away the moon is?", 0.5),
    ("I want to plant something in the garden, and", "I'm not sure what grows well in shade.", 1.0),
    ("What's the best way to", "keep bread fresh for a week?", 0.7),
    ("The thing with my laptop is,", "it keeps getting really hot. What should I do?", 1.2),
    ("If I wanted to learn the guitar,", "where would I start?", 0.8),
    ("Do you think that", "it will rain tomorrow?", 0.4),
    ("I need a present for my dad, and", "he likes fishing. Any ideas?", 1.1),
    ("Since my train was late again,", "how can I ask my boss to work from home?", 0.6),
    ("Tell me about, uh,", "the history of chocolate.", 0.9),
    ("When you make tea, do you put", "the milk in first?", 0.5),
)
_LEAD = "Tell me about the history of the bicycle."
_BACKCHANNELS = ("Mm-hmm.", "Yeah.", "Okay.", "Right.", "Uh-huh.", "Ha ha.")
_INTERRUPTIONS = (
    "Wait, stop.",
    "Actually, tell me about trains instead.",
    "No, that's not what I asked.",
    "Hold on a second.",
    "Sorry, what year was that?",
    "Stop.",
)


@dataclass(frozen=True)
class TurnCase:
    """One input of the set. ``parts`` are spoken in order; a hesitation's pause lies between them."""

    id: str
    kind: Kind
    parts: tuple[Question, ...]
    pause_s: float = 0.0
    lead: Question | None = None  # backchannel/interruption: spoken while the reply to this plays

    @property
    def text(self) -> str:
        return " ".join(q.text for q in self.parts)


def _cases() -> tuple[TurnCase, ...]:
    cases: list[TurnCase] = []
    for i, text in enumerate(_COMPLETE):
        cases.append(TurnCase(f"tc{i:02d}", "complete", (Question(f"tc{i:02d}", text, _VOICES[i % 6]),)))
    for i, (opening, rest, pause) in enumerate(_HESITATIONS):
        voice = _VOICES[(i + 1) % 6]
        parts = (Question(f"th{i:02d}a", opening, voice), Question(f"th{i:02d}b", rest, voice))
        cases.append(TurnCase(f"th{i:02d}", "hesitation", parts, pause))
    for kind, texts, tag in (("backchannel", _BACKCHANNELS, "tb"), ("interruption", _INTERRUPTIONS, "ti")):
        for i, text in enumerate(texts):
            voice = _VOICES[(i + 2) % 6]
            lead = Question(f"{tag}{i:02d}q", _LEAD, voice)
            cases.append(TurnCase(f"{tag}{i:02d}", kind, (Question(f"{tag}{i:02d}", text, voice),), lead=lead))  # type: ignore[arg-type]
    return tuple(cases)


TURN_CASES = _cases()


def clips() -> tuple[Question, ...]:
    """Every spoken clip the set needs (for ``ensure_audio``)."""
    seen: dict[str, Question] = {}
    for case in TURN_CASES:
        for q in (*case.parts, *((case.lead,) if case.lead else ())):
            seen[q.id] = q
    return tuple(seen.values())


def case_audio(case: TurnCase, audio: dict[str, np.ndarray]) -> np.ndarray:
    """The user's input as one stream: a hesitation's two parts with its pause between them."""
    pieces: list[np.ndarray] = []
    for i, q in enumerate(case.parts):
        if i:
            pieces.append(np.zeros(int(case.pause_s * RATE), dtype=np.float32))
        pieces.append(audio[q.id])
    return np.concatenate(pieces)
