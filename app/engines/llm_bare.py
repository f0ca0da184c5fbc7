"""Bare ``llama_decode``: the ceiling a streaming reply is compared with.

llama-bench's ``tg`` test, through llama-cpp-python's low-level API, so it runs
on the very library, threads and thread team the app decodes with: one token
per ``llama_decode``, no sampling, no Python loop work beyond the call.
"""

from __future__ import annotations

import time
from typing import Any

_DEPTH_TEXT = b"Tell me a story about the sea."


def bare_decode_tps(llama: Any, n_tokens: int = 128, depth: int = 0) -> float:
    """Tokens per second of ``n_tokens`` single-token decodes; ``llama`` is a ``llama_cpp.Llama``.

    By default llama-bench's ``tg128``: 128 tokens from an empty cache, the first the
    BOS token.  ``depth`` tokens are evaluated first (llama-bench's ``-d``): every
    token then attends to them, so a reply after a 170-token prompt decodes ~5 %
    slower than one from an empty cache.  Leaves the KV cache empty.
    """
    import llama_cpp

    memory = llama_cpp.llama_get_memory(llama.ctx)
    llama.reset()
    llama_cpp.llama_memory_clear(memory, True)
    try:
        if depth:
            phrase = llama.tokenize(_DEPTH_TEXT, add_bos=False)
            llama.eval((phrase * (depth // len(phrase) + 1))[:depth])
        ctx = llama.ctx
        one = (llama_cpp.llama_token * 1)(llama.token_bos())
        started = time.perf_counter()
        for i in range(n_tokens):
            if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)) != 0:
                raise RuntimeError(f"llama_decode failed at position {depth + i}")
            one[0] = 1000 + i  # any valid ids: the cost of a decode does not depend on them
        llama_cpp.llama_synchronize(ctx)
        return n_tokens / (time.perf_counter() - started)
    finally:
        llama.reset()
        llama_cpp.llama_memory_clear(memory, True)
