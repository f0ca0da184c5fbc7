"""Which logits are in llama.cpp's context, and a batch that leaves two rows of them.

llama-cpp-python samples a reply's first token from whatever logits the context
holds when the whole prompt is already cached.  They are right only if the last
evaluation ended at the prompt's last token.  Our own evaluations mark that
(``LastLogits``), and a reply trusts the mark only if nothing evaluated since.
The bench's scoring, for one, calls the engine directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LastLogits:
    """The cache length at our last evaluation, and a sample of the logits it left."""

    def __init__(self) -> None:
        self._at = -1
        self._seen: np.ndarray | None = None

    def mark(self, llm: Any) -> None:
        """Our evaluation just left the logits of the cache's last position in the context."""
        self._at, self._seen = llm.n_tokens, _sample(llm)

    def forget(self) -> None:
        self._at, self._seen = -1, None

    def still_there(self, llm: Any) -> bool:
        """The cache is as marked and its last logits were not replaced since."""
        if self._seen is None or self._at != llm.n_tokens:
            return False
        return bool(np.array_equal(_sample(llm), self._seen))


def eval_reading(llm: Any, tokens: list[int], start: int, read_at: int, mark: LastLogits, whole: bool) -> np.ndarray:
    """Evaluate ``tokens[start:]`` and return the logits after ``tokens[read_at]`` (float64 copy).

    ``whole``: one batch with two outputs, ``read_at``'s and the prompt's last, so the
    reply that follows samples its first token with nothing left to evaluate (8 + 6
    tokens in two batches took 58 ms here, 14 in one 42).  A prompt longer than a
    batch, or a llama-cpp-python without these internals, evaluates only up to
    ``read_at``.  ``llm`` is a ``llama_cpp.Llama``.
    """
    import llama_cpp

    part, n_vocab = tokens[start:], llm.n_vocab()
    batch, context = getattr(llm, "_batch", None), getattr(llm, "_ctx", None)
    mark.forget()
    if not whole or batch is None or context is None or len(part) > llm.n_batch or not hasattr(llm, "_requires_eval"):
        llm.n_tokens = start
        llm.eval(tokens[start : read_at + 1])
        mark.mark(llm)
        row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    else:
        context.kv_cache_seq_rm(-1, start, -1)
        batch.set_batch(batch=part, n_past=start, logits_all=False)  # logits for the last position...
        batch.batch.logits[read_at - start] = True  # ...and for the cue's
        llm.n_tokens = start  # until the decode succeeds, the cache holds only the prefix
        context.decode(batch)
        llm.input_ids[start : len(tokens)] = part
        llm.n_tokens = len(tokens)
        llm._requires_eval = False  # generate() may sample from the last position's logits as they are
        mark.mark(llm)
        row = llama_cpp.llama_get_logits_ith(llm.ctx, read_at - start)
    return np.ctypeslib.as_array(row, shape=(n_vocab,)).astype(np.float64)


def _sample(llm: Any) -> np.ndarray:
    import llama_cpp

    row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),))[::4096].copy()
