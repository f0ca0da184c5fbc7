"""Tokens of a rendered chat prompt, each message tokenized once.

Every draft, the end-of-turn cue and the reply render the whole conversation
again, and llama.cpp tokenized all of it each time: 2.6 ms for a 436-token
prompt, twice on the way to a reply's first token.  llama.cpp splits a text at
special tokens before it runs BPE, so a prompt cut where a message's special
marker begins tokenizes to the same ids piece by piece.  The pieces of past
messages are remembered; only the new ones are tokenized.  A tokenizer for which
the pieces do not add up (checked once, on a sample) is always called whole.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any

# Special tokens that open a message in the chat templates of the bundled and usual models.
MESSAGE_MARKERS = ("<|im_start|>", "<start_of_turn>", "<|start_header_id|>")
_REMEMBERED = 256  # message pieces kept (a long session has a few dozen)
_SAMPLE = "{m}system\nBe brief.{e}\n{m}user\nHello there, how are you?{e}\n{m}assistant\n"


class MessageTokens:
    """``tokens(text)`` equals ``llm.tokenize(text, add_bos=False, special=True)``, sooner for a known history."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self._pieces: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()  # the history's token count and the LLM worker may ask at once
        self.marker = self._working_marker()

    def tokens(self, text: str) -> list[int]:
        if self.marker is None:
            return self._whole(text)
        out: list[int] = []
        for piece in self._split(text):
            with self._lock:
                ids = self._pieces.get(piece)
                if ids is not None:
                    self._pieces.move_to_end(piece)
            if ids is None:
                ids = self._whole(piece)
                with self._lock:
                    self._pieces[piece] = ids
                    if len(self._pieces) > _REMEMBERED:
                        self._pieces.popitem(last=False)
            out += ids
        return out

    def _whole(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _split(self, text: str) -> list[str]:
        assert self.marker is not None
        starts = [i for i in _find_all(text, self.marker) if i > 0]
        bounds = [0, *starts, len(text)]
        return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    def _working_marker(self) -> str | None:
        """The first marker that is one special token and splits a sample prompt without changing its ids."""
        for marker in MESSAGE_MARKERS:
            if len(self._whole(marker)) != 1:
                continue
            sample = _SAMPLE.format(m=marker, e="<|im_end|>" if marker == "<|im_start|>" else "\n")
            self.marker = marker
            pieces = [i for piece in self._split(sample) for i in self._whole(piece)]
            if pieces == self._whole(sample):
                return marker
        self.marker = None
        return None


def _find_all(text: str, needle: str) -> list[int]:
    found, at = [], text.find(needle)
    while at >= 0:
        found.append(at)
        at = text.find(needle, at + len(needle))
    return found
