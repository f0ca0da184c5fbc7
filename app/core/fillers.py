"""Is a transcript a turn?  Fillers, noise and doubted decodes get no reply.

A user who says "mm-hmm" while thinking, coughs, or whose microphone picks up
a door, should not get an answer to it: the reply would talk over them and
answer nothing they said.  This is the one place that decides, as a pure
function of the transcript, so a turn model can later build on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Sounds people make while listening or thinking. "Yeah", "okay", "no" are answers, not fillers.
FILLER_WORDS = frozenset(
    {
        "mm", "mmm", "mmmm", "m", "hmm", "hm", "hmmm", "mhm", "mm-hmm", "mmhmm", "mm-hm", "uh-huh", "uhhuh",
        "uh", "uhh", "um", "umm", "uhm", "hum", "er", "erm", "ah", "ahh", "eh", "huh", "oh", "ooh", "ha", "hah",
    }
)  # fmt: skip
# Spelled-out hums the recognisers invent: "mm-m-m-m", "hmmmm", "uhhh", "ummm", "uh-huh-huh".
_HUM = re.compile(r"(?:[mh]+|u+[hm]*|e+[rh]+m*|a+h*|o+h*|h+u+h+)(?:-(?:[mh]+|u+[hm]*|h+u+h+))*")
NOT_FILLERS = frozenset({"uh-uh", "mm-mm"})  # "no": an answer
# What a recogniser writes for a cough, hiss or hum (Whisper and Moonshine alike), as a whole transcript.
NON_SPEECH_LINES = frozenset({"you"})
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
# Whisper writes what it hears but does not understand as a bracketed label: "[Music]", "(coughs)", "*sigh*".
_LABEL = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")


# "Why do cats purr?" heard as "Why do cats do?" (doubted): silence would leave the user waiting,
# an answer to the misheard words would be wrong. Short doubted lines are noise (Whisper's
# "I'll see you in the next video." over a hiss) and stay unanswered.
ASK_AGAIN = "Sorry, I didn't quite catch that. Could you say it again?"
ASK_AGAIN_MIN_WORDS = 3
ASK_AGAIN_MIN_SPEECH_S = 1.0


@dataclass(frozen=True)
class Verdict:
    """``is_turn`` False means: log it, do not reply. ``reason`` says why, for the log."""

    is_turn: bool
    reason: str = ""
    fixed_reply: str = ""  # a turn answered with this line, not the LLM's (speech the recogniser doubts)

    @property
    def not_a_turn(self) -> str:
        """Why it gets no reply ("" for a turn, even one answered with ``fixed_reply``)."""
        return "" if self.is_turn else self.reason


def words_of(text: str) -> list[str]:
    """Lower-case words with labels and punctuation removed ("Mm-hmm." -> ["mm-hmm"])."""
    return _WORD.findall(_LABEL.sub(" ", text.lower()))


def is_filler(word: str) -> bool:
    """A sound, not a word: "mm-hmm", "uhh", "mm-m-m" (lower-case, as ``words_of`` gives it)."""
    if word in NOT_FILLERS:
        return False
    return word in FILLER_WORDS or _HUM.fullmatch(word) is not None


def judge(text: str, doubtful: bool = False, audio_s: float = 0.0) -> Verdict:
    """Whether the user's transcript deserves a reply.

    ``doubtful`` is the recogniser's own flag (a low mean log-probability, a loop,
    a decode cut at its length bound): an invented line is not something the user said.
    A doubted decode of a real sentence (several words, ``audio_s`` of speech) is asked
    again, as a person would, rather than met with silence or answered as misheard.
    """
    words = words_of(text)
    if not words:
        return Verdict(False, "no words" if not text.strip() else f"no words in {text.strip()[:40]!r}")
    if " ".join(words) in NON_SPEECH_LINES:
        return Verdict(False, f"a line recognisers write for noise: {text.strip()[:40]!r}")
    if all(is_filler(w) for w in words):
        return Verdict(False, f"only filler: {' '.join(words)[:40]!r}")
    if doubtful:
        doubted = f"the recogniser doubts {text.strip()[:60]!r}"
        if len(words) >= ASK_AGAIN_MIN_WORDS and audio_s >= ASK_AGAIN_MIN_SPEECH_S:
            return Verdict(True, f"{doubted}: asked again", fixed_reply=ASK_AGAIN)
        return Verdict(False, doubted)
    return Verdict(True)


# While the replica talks, these say "go on": the reply pauses for them and resumes.
BACKCHANNEL_WORDS = frozenset(
    {
        "yeah", "yep", "yes", "yup", "okay", "ok", "right", "sure", "alright", "all", "i", "see", "got", "it",
        "cool", "wow", "nice", "true", "exactly", "great", "good", "fine", "indeed", "haha", "hahaha", "aha",
    }
)  # fmt: skip
MAX_BACKCHANNEL_WORDS = 4
# One word that asks for the floor. Any other lone word heard over the replica is taken for a hum the
# recogniser spelled oddly (Piper's "mm-hmm" came out as "NEMMA"): the reply goes on.
INTERRUPTING_WORDS = frozenset(
    {"stop", "wait", "no", "nope", "sorry", "what", "pardon", "hold", "hey", "excuse", "actually", "listen", "hello"}
)


def is_backchannel(text: str, doubtful: bool = False) -> bool:
    """Heard while the replica spoke: a listener's "mm-hmm", "yeah", laugh or cough, not an interruption.

    No words at all (a cough, a laugh the recogniser labels) or a decode it doubts
    is a sound, not a request; a question, "wait", "stop", "actually", "no" are requests.
    """
    words = words_of(text)
    if not words or doubtful:
        return True
    if len(words) > MAX_BACKCHANNEL_WORDS or text.strip().endswith("?"):
        return False
    if len(words) == 1 and words[0] not in INTERRUPTING_WORDS:
        return True
    return all(w in BACKCHANNEL_WORDS or is_filler(w) for w in words)
