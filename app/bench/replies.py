"""What the replica says, scored: the fixed prompts of ``doppel bench --replies`` and their checks.

A fast reply that is wrong, repeats the user, recites its persona, stops
mid-sentence or lectures breaks the illusion as surely as a slow one.  Every
check here is a pure function of the user's words, the reply and the prompt
the model was given, so a change of model, prompt or sampling can be judged
by the same numbers.  The prompts were written for this bench and are kept
apart from the few-shot turns (``app/engines/llm_prompt.py``), which must not
contain their answers.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field

PERSONA_SENTENCES = 2  # "Keep answers short: one or two sentences."

# Persona prompts tried against the configured one (``persona=NAME`` in a bench variant).
PERSONAS = {
    "p2": "You are Joe. You chat with the user on a video call. Answer questions correctly in one or two short "
    "sentences.",
    "p3": "Your name is Joe. Reply to the user in one or two short, friendly sentences. Give correct facts.",
}


@dataclass(frozen=True)
class Turn:
    """One user message; ``answer`` groups of alternatives, ``need`` of them must appear in the reply."""

    text: str
    answer: tuple[tuple[str, ...], ...] = ()
    need: int = 0  # 0: every group
    max_words: int = 0  # an instruction's own limit ("answer in one word"); 0: the persona's sentences

    @property
    def needed(self) -> int:
        return self.need or len(self.answer)


@dataclass(frozen=True)
class Script:
    """A conversation from a fresh history; every turn is scored, ``answer`` only where it is given."""

    id: str
    kind: str  # fact | chat | follow-up | instruction | backchannel
    turns: tuple[Turn, ...]
    spoken: bool = False  # also asked aloud (Piper) in the spoken conversation


def _t(text: str, *answer: str | tuple[str, ...], need: int = 0, max_words: int = 0) -> Turn:
    groups = tuple((a,) if isinstance(a, str) else a for a in answer)
    return Turn(text, groups, need, max_words)


def _one(id_: str, kind: str, text: str, *answer: str | tuple[str, ...], spoken: bool = False, **kw: int) -> Script:
    return Script(id_, kind, (_t(text, *answer, **kw),), spoken)


COLOURS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "black", "white", "brown", "grey", "gray")

SCRIPTS: tuple[Script, ...] = (
    # facts with one checkable answer
    _one("f01", "fact", "What is the capital of France?", "paris", spoken=True),
    _one("f02", "fact", "How many days are there in a week?", ("seven", "7")),
    _one("f03", "fact", "What colour is a ripe banana?", "yellow", spoken=True),
    _one("f04", "fact", "How many legs does a spider have?", ("eight", "8")),
    _one("f05", "fact", "What is the largest planet in our solar system?", "jupiter", spoken=True),
    _one("f06", "fact", "What do bees make?", "honey"),
    _one("f07", "fact", "What is the capital of Japan?", "tokyo"),
    _one("f08", "fact", "How many hours are there in a day?", ("24", "twenty-four", "twenty four"), spoken=True),
    _one("f09", "fact", "Who wrote Romeo and Juliet?", "shakespeare"),
    _one("f10", "fact", "What is the opposite of hot?", "cold"),
    _one("f11", "fact", "Which ocean is the largest?", "pacific"),
    _one("f12", "fact", "What is two plus three?", ("five", "5")),
    _one("f13", "fact", "At what temperature in Celsius does water boil?", ("100", "hundred")),
    _one("f14", "fact", "What language do people speak in Brazil?", "portuguese", spoken=True),
    _one("f15", "fact", "Which planet is closest to the sun?", "mercury"),
    _one("f16", "fact", "How many months are there in a year?", ("twelve", "12")),
    _one("f17", "fact", "What animal says moo?", ("cow", "cows", "cattle")),
    _one("f18", "fact", "What is frozen water called?", "ice"),
    # chit-chat: no right answer, only the checks every reply gets
    # (spoken prompts have no commas: a pause that long would end the turn)
    _one("c01", "chat", "Hi there how are you today?", spoken=True),
    _one("c02", "chat", "What do you like to do for fun?"),
    _one("c03", "chat", "Tell me a little about yourself."),
    _one("c04", "chat", "Sorry but what time is it right now?", spoken=True),
    _one("c05", "chat", "I had a really long day at work."),
    _one("c06", "chat", "Do you like music?"),
    _one("c07", "chat", "What's your favourite food?"),
    _one("c08", "chat", "Thanks, that was helpful!"),
    # follow-ups: the answer is only in the history
    Script("h01", "follow-up", (_t("My name is Sam."), _t("What is my name?", "sam")), spoken=True),
    Script("h02", "follow-up", (_t("I have two cats and one dog."), _t("How many pets do I have?", ("three", "3")))),
    Script("h03", "follow-up", (_t("I live in Madrid."), _t("Which country do I live in?", "spain"))),
    Script("h04", "follow-up", (_t("My favourite colour is green."), _t("What is my favourite colour?", "green"))),
    Script("h05", "follow-up", (_t("I'm going to Paris next week."), _t("Which famous tower should I see?", "eiffel"))),
    Script("h06", "follow-up", (_t("I'm learning the guitar."), _t("What instrument am I learning?", "guitar"))),
    # instructions
    _one("i01", "instruction", "Answer in one word: what colour is grass?", "green", max_words=3),
    _one("i02", "instruction", "Answer with a number: how many wheels does a bicycle have?", ("two", "2"), max_words=3),
    _one("i03", "instruction", "Reply with yes or no: is the sun hot?", "yes", max_words=3),
    _one("i04", "instruction", "Say only the word hello.", "hello", max_words=3),
    _one("i05", "instruction", "Name three colours.", *COLOURS, need=3),
    _one("i06", "instruction", "Count from one to five.", ("one", "1"), ("five", "5")),
    _one("i07", "instruction", "In a few words, what is rain?", "water", max_words=12),
    # backchannels: at the start, and after a reply
    _one("b01", "backchannel", "Mm-hmm."),
    _one("b02", "backchannel", "Yeah."),
    _one("b03", "backchannel", "Mm-mm."),
    Script("b04", "backchannel", (_t("Tell me something about cats."), _t("Uh-huh."))),
    Script("b05", "backchannel", (_t("What should I cook tonight?"), _t("Okay."))),
    Script("b06", "backchannel", (_t("Do you like the sea?"), _t("Right."))),
)  # fmt: skip

# Small enough for a test: one of each kind (spoken: the first and the follow-up).
SUBSET = ("f01", "c04", "h01", "i01", "b02")
SUBSET_SPOKEN = ("f01", "h01")


def scripts(ids: tuple[str, ...] | None = None) -> list[Script]:
    return [s for s in SCRIPTS if ids is None or s.id in ids]


# --- checks ------------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?:\s+|$)")
_ENDS_WELL = re.compile(r"[.!?…\"”')\]*]$|[\U0001F300-\U0001FAFF\u2600-\u27BF]$")
_ENGLISH_WORDS = (
    "the a an is are was and to of in it you i that for on with my your what be this have do not can me we so "
    "just at as like how about there here"
)
_ENGLISH = frozenset(_ENGLISH_WORDS.split())
_FOREIGN_WORDS = (  # Spanish, French, German, Italian, Portuguese
    "el la los las es y que un una le les et est une des du der die das und ist nicht ein eine il di che per "
    "non um uma não je tu nous vous ich du sie wir"
)
_FOREIGN = frozenset(_FOREIGN_WORDS.split())
_SMALL = _ENGLISH | {"i'm", "you're", "it's", "yes", "no", "oh", "well", "sorry", "really", "right", "okay", "ok"}


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def sentences(text: str) -> list[str]:
    """The reply's sentences (a trailing fragment counts as one)."""
    parts = [p.strip() for p in _SENTENCE_END.split(text.strip())]
    return [p for p in parts if words(p)]


def right(reply: str, turn: Turn) -> bool | None:
    """None when the turn has no checkable answer."""
    if not turn.answer:
        return None
    said = " ".join(words(reply))
    hits = sum(any(re.search(rf"\b{re.escape(alt)}\b", said) for alt in group) for group in turn.answer)
    return hits >= turn.needed


def parrots(user: str, reply: str) -> bool:
    """The reply (or one of its longer sentences) is the user's message again, with nothing of its own.

    It says no word the user did not say but small ones ("I'm", "is"), and most of the user's
    words: "The largest planet in our solar system is Jupiter." restates the question but answers it.
    """
    said = set(words(user))
    if not said:
        return False
    whole = [reply] + [s for s in sentences(reply) if len(words(s)) >= 4]
    for candidate in whole:
        echo = set(words(candidate))
        new = echo - said - _SMALL
        if echo and not new and len(echo & said) >= 0.6 * len(said):
            return True
    return False


def repeats_itself(reply: str, previous: str) -> bool:
    """The reply is the replica's own previous reply again (or begins with it), near enough."""
    now, before = " ".join(words(reply)), " ".join(words(previous))
    if not now or not before:
        return False
    head = now[: len(before)]
    return difflib.SequenceMatcher(None, before, head).ratio() >= 0.8


def _grams(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def leaks(reply: str, persona: str, examples: tuple[str, ...] = ()) -> bool:
    """Four words in a row from the persona prompt, or five from a few-shot reply, recited."""
    said4, said5 = _grams(reply, 4), _grams(reply, 5)
    if said4 & _grams(persona, 4):
        return True
    return any(said5 & _grams(example, 5) for example in examples)


def cut(reply: str, finish_reason: str) -> bool:
    """Stopped by the token cap, or ending mid-sentence."""
    text = reply.strip()
    return finish_reason == "length" or not text or not _ENDS_WELL.search(text)


def too_long(reply: str, turn: Turn) -> bool:
    if turn.max_words:
        return len(words(reply)) > turn.max_words
    return len(sentences(reply)) > PERSONA_SENTENCES


def switches_language(reply: str) -> bool:
    """Mostly another script, or more of another language's small words than English ones."""
    letters = [c for c in reply if c.isalpha()]
    if letters:
        latin = sum("LATIN" in unicodedata.name(c, "") for c in letters)
        if latin / len(letters) < 0.8:
            return True
    w = words(reply)
    foreign, english = sum(x in _FOREIGN for x in w), sum(x in _ENGLISH for x in w)
    return foreign >= 2 and foreign > english


@dataclass
class Score:
    """One reply's verdicts."""

    script: str
    kind: str
    user: str
    reply: str
    finish_reason: str
    right: bool | None
    parrot: bool
    repeat: bool
    leak: bool
    cut: bool
    long: bool
    language: bool
    extra: dict = field(default_factory=dict)  # latency of this reply

    @property
    def ok(self) -> bool:
        flags = (self.parrot, self.repeat, self.leak, self.cut, self.long, self.language)
        return self.right is not False and not any(flags)


def score(
    script: Script, turn: Turn, reply: str, finish_reason: str, persona: str, examples=(), previous: str = ""
) -> Score:
    """``previous``: the replica's reply before this one in the same conversation."""
    return Score(
        script.id,
        script.kind,
        turn.text,
        reply,
        finish_reason,
        right(reply, turn),
        parrots(turn.text, reply),
        repeats_itself(reply, previous),
        leaks(reply, persona, tuple(examples)),
        cut(reply, finish_reason),
        too_long(reply, turn),
        switches_language(reply),
    )


def summary(scores: list[Score]) -> dict[str, float | int]:
    """Rates over all replies (right-answer rate over the replies that have an answer)."""
    n = len(scores)
    checked = [s for s in scores if s.right is not None]

    def rate(flag: str) -> float:
        return round(sum(bool(getattr(s, flag)) for s in scores) / n, 3) if n else 0.0

    return {
        "replies": n,
        "answerable": len(checked),
        "right": round(sum(bool(s.right) for s in checked) / len(checked), 3) if checked else 0.0,
        "parrot": rate("parrot"),
        "repeat": rate("repeat"),
        "leak": rate("leak"),
        "cut": rate("cut"),
        "long": rate("long"),
        "language": rate("language"),
        "ok": rate("ok"),
    }
