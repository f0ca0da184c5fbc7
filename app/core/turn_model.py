"""When has the user finished?  The end-of-turn policy the listening side consults at each pause.

A fixed 250 ms of silence answers a clean question fast and splits a hesitant
one ("so I was thinking about, um, ... a trip"). At the first pause the
transcript is already there (it was made for the speculative reply), so two
cues come almost free: the words (a turn that ends on "and", "the", "about" or
a comma is not over) and, optionally, an audio model of the voice's prosody
(Smart Turn).  Complete: the turn ends after the short window, as before.
Unfinished: the listener waits up to the long window for more; the reply that
was already made for the fragment is kept, and used if the user says no more.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

import numpy as np

from app.core.engines import TurnEndModel
from app.core.fillers import is_filler, words_of

# Words a sentence cannot end on: conjunctions, articles, possessives, prepositions, intensifiers.
# A transcript stopping on one (with no "?" after it) was cut off mid-thought.
CONTINUING_WORDS = frozenset(
    {
        "and", "or", "but", "so", "because", "if", "when", "while", "although", "though", "unless", "than",
        "that", "which", "whether", "like", "the", "a", "an", "my", "your", "his", "our", "their", "some",
        "every", "each", "of", "to", "for", "with", "from", "into", "about", "at", "by", "in", "on",
        "between", "through", "without", "very", "really", "just", "also", "even", "maybe",
    }
)  # fmt: skip
_OPEN_END = re.compile(r"(,|;|:|-|\.\.\.|…)\s*$")  # punctuation a recogniser writes for a voice left hanging


# Openings that need a main clause after them: "if I wanted to learn the guitar." is not a question yet.
_SUBORDINATE_OPENERS = frozenset({"if", "since", "when", "because", "although", "though", "while", "unless", "once"})
# Never the last word, even before a "?" (a recogniser adds one to a rising voice): "what's the best way to?"
_NEVER_LAST = frozenset(
    {"and", "or", "but", "because", "if", "the", "a", "an", "my", "your", "our", "their", "to", "of"}
)


# Verbs that take a clause: ending on "<verb> that" the clause is usually still to come ("Do you think
# that | it will rain?"), though "Did you know that?" is a whole question. A recogniser writes the "?"
# either way, so such an ending waits only the pause between two sentences, not the long window.
_CLAUSE_VERBS = frozenset(
    {
        "think", "thought", "know", "knew", "say", "said", "believe", "hope", "guess", "mean", "feel",
        "suppose", "realise", "realize", "sure", "heard", "told", "tell", "wish", "agree", "worried",
    }
)  # fmt: skip


def text_may_go_on(text: str) -> bool:
    """The words can end here but usually do not: a clause-taking verb and "that" ("do you think that?")."""
    words = words_of(text.strip())
    return len(words) >= 2 and words[-1] == "that" and words[-2] in _CLAUSE_VERBS


def text_says_unfinished(text: str) -> bool:
    """The words stop where a thought cannot: on a continuing word, a filler, open punctuation or a bare clause."""
    stripped = text.strip()
    words = words_of(stripped)
    if not words:
        return False
    last = words[-1]
    if _OPEN_END.search(stripped) or is_filler(last) or last in _NEVER_LAST:
        return True
    if stripped.endswith(("?", "!")):
        return False  # "what are you thinking about?" is over
    if words[0] in _SUBORDINATE_OPENERS and "," not in stripped:
        return True
    return last in CONTINUING_WORDS


def unsure_question_ending(text: str, last_word_p: float | None) -> bool:
    """A question whose last word the recogniser barely heard: often a phrase cut off by a pause.

    After a "?" the LLM is not asked (``TurnModel.asks_llm``), so this is the cue that
    catches "do you put | the milk in first?" heard as "do you port?" at the pause.
    """
    return last_word_p is not None and last_word_p < UNSURE_LAST_WORD_P and text.rstrip().endswith("?")


@dataclass(frozen=True)
class TurnWindow:
    """Silence that ends a turn judged complete (min) and one judged unfinished (max), in ms."""

    min_silence_ms: int = 250
    max_silence_ms: int = 1500


CUES = ("text", "llm", "audio")
# Below this the recogniser is unsure of a question's last word. Whisper tiny.en scored the last words of
# the turn bench's finished questions 0.69-1.00, and a question cut off before its object 0.33 ("When you
# make tea, do you port?" for "...do you put | the milk in first?").
UNSURE_LAST_WORD_P = 0.4
# The pause between two sentences of one turn runs ~0.3-0.6 s: a turn the LLM doubts waits it out.
SENTENCE_PAUSE_MS = 600


@dataclass(frozen=True)
class EndJudgement:
    """The verdict at one pause, with what each cue said and what deciding cost."""

    complete: bool
    reason: str
    text_unfinished: bool | None = None  # None: the cue was not consulted
    text_may_go_on: bool = False  # an ending that usually goes on ("do you think that?"): a short hold
    unsure_ending: bool = False  # the recogniser doubts the last word before the "?": a short hold
    p_llm: float | None = None  # P(end-of-turn token) after the user's words
    p_audio: float | None = None  # Smart Turn's P(complete)
    cost_ms: float = 0.0  # the audio model's time (the LLM's is part of its prompt evaluation)
    doubted: bool = False  # the recogniser doubts its own words: they cannot hold the turn long


class TurnModel:
    """Judges each pause from the cues in ``cues`` ("text+llm"; "off" for the fixed window).

    Unfinished when any consulted cue says so.  The LLM cue needs the reply's
    engine (its probability arrives with the prompt's evaluation); an engine
    without it (a remote server) leaves the other cues to decide.
    """

    def __init__(
        self,
        cues: str = "text+llm",
        window: TurnWindow | None = None,
        audio_model: TurnEndModel | None = None,
        llm_threshold: float = 0.8,
        audio_threshold: float = 0.5,
    ) -> None:
        self.cues = frozenset() if cues == "off" else frozenset(cues.split("+"))
        unknown = self.cues - set(CUES)
        if unknown:
            raise ValueError(f"unknown turn cues {sorted(unknown)}: use {', '.join(CUES)} joined with '+', or 'off'")
        if "audio" in self.cues and audio_model is None:
            raise ValueError("the audio cue needs the Smart Turn model")
        self.window = window or TurnWindow()
        self.audio_model = audio_model
        self.llm_threshold, self.audio_threshold = llm_threshold, audio_threshold

    @property
    def wants_llm(self) -> bool:
        return "llm" in self.cues

    @property
    def fixed(self) -> bool:
        return not self.cues

    def judge(
        self, text: str, audio: np.ndarray | None, last_word_p: float | None = None, doubtful: bool = False
    ) -> EndJudgement:
        """The text and audio cues; the LLM's, when wanted, is added by ``with_llm`` as it arrives.

        ``last_word_p``: the recogniser's confidence in the last word, part of the text cue.
        ``doubtful``: the recogniser doubts the whole line (the reply asks the user to say it
        again). Words it made up say nothing of where the user is: "Oh many, many, just have
        a really lovely..." for "How many minutes are there in a day?" in a noisy room held
        1.5 s for its "...".  Such a turn waits at most the pause between two sentences.
        """
        if self.fixed:
            return EndJudgement(True, "fixed window")
        judgement = self._judge(text, audio, last_word_p)
        if not doubtful:
            return judgement
        return replace(judgement, doubted=True, reason=f"{judgement.reason} (the recogniser doubts the words)")

    def _judge(self, text: str, audio: np.ndarray | None, last_word_p: float | None) -> EndJudgement:
        text_unfinished = text_says_unfinished(text) if "text" in self.cues else None
        p_audio, cost = None, 0.0
        if "audio" in self.cues and self.audio_model is not None:
            started = time.perf_counter()
            p_audio = self.audio_model.complete_probability(audio if audio is not None else np.zeros(0, np.float32))
            cost = (time.perf_counter() - started) * 1000
        cues = {"text_unfinished": text_unfinished, "p_audio": p_audio, "cost_ms": cost}
        if text_unfinished:
            return EndJudgement(False, f"the words stop mid-thought: {text.strip()[-30:]!r}", **cues)
        if text_unfinished is not None and text_may_go_on(text):
            return EndJudgement(False, f"the words may go on: {text.strip()[-30:]!r}", text_may_go_on=True, **cues)
        if text_unfinished is not None and unsure_question_ending(text, last_word_p):
            reason = f"the recogniser doubts the last word (p={last_word_p:.2f}): {text.strip()[-30:]!r}"
            return EndJudgement(False, reason, unsure_ending=True, **cues)
        if p_audio is not None and p_audio < self.audio_threshold:
            return EndJudgement(False, f"the voice sounds unfinished (p={p_audio:.2f})", **cues)
        return EndJudgement(True, "complete", **cues)

    def asks_llm(self, judgement: EndJudgement, text: str) -> bool:
        """Whether the LLM's reading is worth its cost for this pause.

        Not when the other cues already hold the turn, nor after a "?": that is the recogniser
        hearing a question end, and on the bench's set the LLM doubted no question the text cue
        had passed (its holds there were statements and misheard words), while reading it
        costs the reply a second prompt step (~15 ms to the first token).
        """
        return self.wants_llm and judgement.complete and not judgement.doubted and not text.rstrip().endswith("?")

    def with_llm(self, judgement: EndJudgement, p_llm: float | None) -> EndJudgement:
        """``judgement`` with the LLM's P(end of turn) after the user's words."""
        if p_llm is None or not self.wants_llm:
            return judgement
        if judgement.complete and p_llm < self.llm_threshold:
            return replace(judgement, complete=False, p_llm=p_llm, reason=f"the LLM expects more (P(end)={p_llm:.2f})")
        return replace(judgement, p_llm=p_llm)

    def wait_ms(self, judgement: EndJudgement) -> int:
        """The silence after the voice that ends this turn: longer the surer the cues are that more is coming.

        The words or the voice saying "unfinished" wait the whole long window.  The LLM
        alone scales it by how far its P(end) falls below the threshold: on the bench's
        set SmolLM2 rates cut-off openings near 0 (0.0-0.23) but also short commands and
        misheard questions at 0.3-0.75 ("Stop." 0.76, "Wait, stop." 0.59), which a flat
        long window made wait 1.5 s each.  It never waits less than the pause between two
        sentences of one turn (``SENTENCE_PAUSE_MS``): "It keeps getting really hot. | What should
        I do?" at P(end) 0.77 was answered, and cut, in that pause.  An ending that may go on
        ("do you think that?") waits that pause too, however sure the LLM is.
        """
        window = self.window
        if judgement.complete:
            return window.min_silence_ms
        if judgement.doubted:
            return SENTENCE_PAUSE_MS
        if judgement.text_unfinished:
            return window.max_silence_ms
        if judgement.p_llm is None:
            short_hold = judgement.text_may_go_on or judgement.unsure_ending
            return SENTENCE_PAUSE_MS if short_hold else window.max_silence_ms
        doubt = min(1.0, max(0.0, 1.0 - judgement.p_llm / self.llm_threshold))
        graded = round(window.min_silence_ms + doubt * (window.max_silence_ms - window.min_silence_ms))
        return min(window.max_silence_ms, max(graded, SENTENCE_PAUSE_MS))
