"""Drop trimmed history from llama.cpp's KV cache instead of evaluating the rest again.

When the conversation outgrows the context, ``History`` drops its oldest exchanges.
The new prompt then differs from the cached one just after the system prompt, so a
plain prefix match keeps only the system prompt and evaluates the whole remaining
history again: ~1,200 tokens, 5-10 s of both cores, landing on the user's next turn.
Instead, the dropped block is removed from the cache and the tokens after it slide
down to close the gap (llama.cpp re-rotates their keys), as llama.cpp's own
"context shift" does.  The kept tokens were computed while the dropped ones were
still in view, so this is an approximation; ``doppel bench --levers`` measures its
cost in time and in the log-likelihood of a fixed reply (``app/bench/levers_shift.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_KEPT = 32  # a shorter match is not worth a shift (and could be a coincidence)


def shift_out_dropped(llm: Any, tokens: Sequence[int]) -> int:
    """If ``tokens`` is the cached prompt with a block cut out, cut it from the cache too.

    ``llm`` is a ``llama_cpp.Llama``.  Returns how many cached tokens were dropped
    (0 when the prompt simply extends or diverges from the cache).
    """
    import llama_cpp

    n = int(llm.n_tokens)
    if n == 0 or len(tokens) == 0:
        return 0
    memory = getattr(llm._ctx, "memory", None)
    if memory is None or not llama_cpp.llama_memory_can_shift(memory):
        return 0
    cached = np.array(llm.input_ids[:n], dtype=np.int64)
    new = np.asarray(tokens, dtype=np.int64)
    m = min(n, len(new))
    differs = np.flatnonzero(cached[:m] != new[:m])
    if len(differs) == 0:
        return 0  # one is a prefix of the other: the ordinary prefix reuse handles it
    p = int(differs[0])
    best_q, best_kept = 0, 0
    for q in np.flatnonzero(cached[p + 1 :] == new[p]) + p + 1:
        span = min(n - q, len(new) - p)
        if span <= best_kept:
            continue
        mismatch = np.flatnonzero(cached[q : q + span] != new[p : p + span])
        kept = int(mismatch[0]) if len(mismatch) else span
        if kept > best_kept:
            best_q, best_kept = int(q), kept
    if best_kept < MIN_KEPT:
        return 0
    q, kept = best_q, best_kept
    # Remove what follows the kept run, then the dropped block, then slide the run down.
    llama_cpp.llama_memory_seq_rm(memory, 0, q + kept, -1)
    llama_cpp.llama_memory_seq_rm(memory, 0, p, q)
    llama_cpp.llama_memory_seq_add(memory, 0, q, q + kept, -(q - p))
    llm.input_ids[p : p + kept] = cached[q : q + kept]
    llm.n_tokens = p + kept
    if hasattr(llm, "_requires_eval"):
        llm._requires_eval = True  # the last logits belong to the old layout
    return q - p
