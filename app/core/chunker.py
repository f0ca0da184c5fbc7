"""LLM text -> speakable chunks for TTS.

The first chunk goes out as soon as a clause boundary follows a minimum number
of words, before a conjunction, or at a word break after 12 tokens (the seed
waited for 20), because Piper's time to first audio grows with the chunk's
length: ~140 ms for 6 words, ~500 ms for 18.  Later chunks are
whole sentences, except that a run-on sentence is cut at a clause boundary past
100 characters and at a word break past 160: Piper's ONNX Runtime arena keeps the
peak of the longest text it has spoken (a 231-character sentence left ~250 MB
resident), so a bounded chunk is bounded memory, and its audio starts sooner.
``speakable`` turns markdown, numbers and abbreviations into words Piper reads sensibly.
"""

from __future__ import annotations

import re

FIRST_CHUNK_MIN_WORDS = 4
FIRST_CHUNK_MAX_TOKENS = 12
LATER_CHUNK_MIN_WORDS = 6
LATER_CLAUSE_CHARS = 100  # past this a later chunk may end at a comma, not only a full stop
LATER_MAX_CHARS = 160  # past this it is cut at the last word break
CONJUNCTION_MIN_WORDS = 4  # a first clause may also end before "and", "but", "because"...
_CONJUNCTIONS = {"and", "but", "because", "so", "which", "while", "when", "although", "or"}

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_CLAUSE_END = re.compile(r"[,;:—–]\s*$|[.!?…]+[\"')\]]*\s*$")
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s*$")
# "B.", the "U." of "U.S.": a period after a lone letter is an initial or abbreviation, and the text goes on.
_INITIAL_END = re.compile(r"(?:^|[\s.(\"'])[A-Za-z]\.\s*$")
_ABBREVIATIONS = {
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "Ms.": "Miz",
    "Dr.": "Doctor",
    "St.": "Saint",
    "Prof.": "Professor",
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "vs.": "versus",
    "approx.": "about",
    "No.": "number",
    "Jr.": "Junior",
    "Sr.": "Senior",
    "a.m.": "A M",
    "p.m.": "P M",
    "AM": "A M",
    "PM": "P M",
}
_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_to_words(n: int) -> str:
    """English words for 0 <= n < 10**12 (larger numbers are read digit by digit)."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_to_words(rest))
    for value, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= value:
            if n >= 1000 * value and value == 10**9:
                break
            rest = n % value
            head = number_to_words(n // value) + " " + name
            if rest == 0:
                return head
            return head + (" and " if rest < 100 else " ") + number_to_words(rest)
    return " ".join(_ONES[int(d)] for d in str(n))


def _year_or_number(match: re.Match[str]) -> str:
    digits = match.group(0).replace(",", "")
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 1999 and "," not in match.group(0):
        high, low = divmod(n, 100)
        return number_to_words(high) + (
            " hundred" if low == 0 else " " + ("oh " if low < 10 else "") + number_to_words(low)
        )
    return number_to_words(n)


def speakable(text: str) -> str:
    """Strip markdown and expand numbers, symbols and abbreviations for speech."""
    # Terminal colour codes and control/format characters are not speech (a NUL makes Piper raise,
    # "\x1b[31m" would be read out as "thirty-onem"); lone surrogates cannot reach the phonemizer.
    t = _ANSI_ESCAPE.sub(" ", text)
    t = _CONTROL_CHARS.sub(" ", t).encode("utf-8", "replace").decode("utf-8")
    t = re.sub(r"```.*?```", " ", t, flags=re.S)
    t = re.sub(r"`([^`]*)`", r"\1", t)
    t = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", t)  # images
    t = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", t)  # links keep their text
    t = re.sub(r"<[^>]+>", " ", t)  # html tags
    t = re.sub(r"(\*\*|__|\*|_|~~)(\S(?:.*?\S)?)\1", r"\2", t)
    t = re.sub(r"^\s{0,3}(#{1,6}|[-*+]|\d+[.)])\s+", "", t, flags=re.M)  # headings, bullets
    t = re.sub(r"[*#_~|>]+", " ", t)
    for abbr, full in _ABBREVIATIONS.items():
        t = re.sub(r"(?<![\w.])" + re.escape(abbr) + r"(?!\w)", full, t)
    t = re.sub(r"\b(\d{1,2}):(\d\d)\b", _clock_time, t)
    t = re.sub(
        r"\$(\d[\d,]*)(?:\.(\d\d))?",
        lambda m: m.group(1) + " dollars" + (f" {m.group(2)} cents" if m.group(2) else ""),
        t,
    )
    t = re.sub(r"(\d+(?:\.\d+)?)\s?%", r"\1 percent", t)
    t = re.sub(
        r"(\d+)\.(\d+)",
        lambda m: number_to_words(int(m.group(1))) + " point " + " ".join(_ONES[int(d)] for d in m.group(2)),
        t,
    )
    t = re.sub(r"(\d+)(st|nd|rd|th)\b", lambda m: _ordinal(int(m.group(1))), t)
    t = re.sub(r"\d{1,3}(?:,\d{3})+|\d+", _year_or_number, t)
    t = t.replace("&", " and ").replace("@", " at ").replace("+", " plus ").replace("=", " equals ")
    return re.sub(r"\s+", " ", t).strip()


def _clock_time(match: re.Match[str]) -> str:
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes == 0:
        return number_to_words(hours) + " o'clock"
    return number_to_words(hours) + (" oh " if minutes < 10 else " ") + number_to_words(minutes)


def _ordinal(n: int) -> str:
    words = number_to_words(n)
    irregular = {
        "one": "first",
        "two": "second",
        "three": "third",
        "five": "fifth",
        "eight": "eighth",
        "nine": "ninth",
        "twelve": "twelfth",
    }
    head, _, last = words.rpartition("-") if "-" in words else words.rpartition(" ")
    sep = "-" if "-" in words else " "
    if last in irregular:
        last = irregular[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return (head + sep if head else "") + last


class Chunker:
    """Accumulates streamed tokens and releases speakable chunks."""

    def __init__(self, first_min_words: int = FIRST_CHUNK_MIN_WORDS, first_max_tokens: int = FIRST_CHUNK_MAX_TOKENS):
        self.first_min_words = first_min_words
        self.first_max_tokens = first_max_tokens
        self._buffer = ""
        self._tokens_in_buffer = 0
        self.chunks_out = 0

    def push(self, token_text: str) -> str | None:
        """Add a token; return a chunk when one is ready."""
        if (
            self.chunks_out == 0
            and token_text[:1].isspace()
            and token_text.strip().lower() in _CONJUNCTIONS
            and len(self._buffer.split()) >= CONJUNCTION_MIN_WORDS
        ):
            chunk = self._release(len(self._buffer))
            self._buffer, self._tokens_in_buffer = token_text, 1
            return chunk
        self._buffer += token_text
        self._tokens_in_buffer += 1
        words = len(self._buffer.split())
        if _INITIAL_END.search(self._buffer):  # "3000 B." may go on "C., and": no boundary yet
            return None
        if self.chunks_out == 0:
            if words >= self.first_min_words and _CLAUSE_END.search(self._buffer):
                return self._release(len(self._buffer))
            if self._tokens_in_buffer >= self.first_max_tokens:
                cut = self._buffer.rstrip().rfind(" ")  # no boundary came: cut at the last word break
                if cut > 0:
                    return self._release(cut)
            return None
        if words >= LATER_CHUNK_MIN_WORDS and _SENTENCE_END.search(self._buffer):
            return self._release(len(self._buffer))
        if len(self._buffer) >= LATER_CLAUSE_CHARS and _CLAUSE_END.search(self._buffer):
            return self._release(len(self._buffer))
        if len(self._buffer) >= LATER_MAX_CHARS:
            cut = self._buffer.rstrip().rfind(" ")
            if cut > 0:
                return self._release(cut)
        return None

    def flush(self) -> str | None:
        return self._release(len(self._buffer)) if self._buffer.strip() else None

    def _release(self, end: int) -> str | None:
        text, self._buffer = self._buffer[:end].strip(), self._buffer[end:]
        self._tokens_in_buffer = 0
        if not text:
            return None
        self.chunks_out += 1
        return text
