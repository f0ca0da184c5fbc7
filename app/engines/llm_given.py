"""A given reply decoded as ``generate`` would decode it: the bench's same-work baseline.

Two runs of a sampled reply differ in length and words, and a short reply's TPS
weighs its slower first steps more, so the engine replayed on a pipeline turn's
prompt does not do that turn's work.  Here every step does what a step of
llama-cpp-python's ``generate`` does (sample from the logits, detokenize,
evaluate one token), but the token evaluated is the given one.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping, Sequence
from typing import Any


def decode_given(
    llama: Any, prompt: Sequence[int], reply_ids: Sequence[int], sampling: Mapping[str, Any]
) -> Iterator[int]:
    """Evaluate ``prompt``, then each of ``reply_ids``; yields each id once it is "sampled" (ready)."""
    llama._sampler = llama._init_sampler(**sampling)  # built once per reply, as generate does
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    llama.eval(list(prompt))
    for token_id in reply_ids:
        llama.sample(**sampling)  # the step's sampling cost; its choice is set aside
        decoder.decode(llama.detokenize([token_id]))
        yield token_id
        llama.eval([token_id])
