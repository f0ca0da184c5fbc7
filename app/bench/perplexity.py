"""LLM perplexity on the fixed text, to show what a re-quantization costs in quality.

A speed trick that changes the weights (Q4_1 -> Q8_0 here) must be shown not
to make the model worse; perplexity on the same text, with the same context
length, is the cheap and repeatable measure.  The text is cut into windows of
``n_ctx`` tokens, each starting from BOS, and every token after the first of
its window is scored; all windows are evaluated in one pass each.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.bench.ppl_text import TEXT, TEXT_ID

PPL_CONTEXT = 512


@dataclass(frozen=True)
class Perplexity:
    model: str
    ppl: float
    tokens_scored: int
    n_ctx: int
    text_id: str
    seconds: float


def perplexity(
    model_path: Path,
    text: str = TEXT,
    n_ctx: int = PPL_CONTEXT,
    threads: int = 2,
    text_id: str = TEXT_ID,
    **llama_options: object,
) -> Perplexity:
    """exp(mean negative log-likelihood) of ``text`` under the GGUF at ``model_path``.

    ``llama_options`` go to ``Llama`` (the KV cache's type, for its lever).
    """
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(
        model_path=str(model_path),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,
        verbose=False,
        **llama_options,  # type: ignore[arg-type]
    )
    try:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False)
        bos = llm.token_bos()
        nll, scored = 0.0, 0
        step = n_ctx - 1  # each window: BOS + up to n_ctx - 1 tokens of the text
        for start in range(0, len(tokens), step):
            window = [bos, *tokens[start : start + step]]
            if len(window) < 3:
                break
            llm.reset()
            llm.eval(window)
            logits = np.asarray(llm.scores[: len(window) - 1], dtype=np.float64)
            nll += _nll_sum(logits[1:], np.asarray(window[2:]))  # from the 2nd text token on
            scored += len(window) - 2
    finally:
        llm.close()
    return Perplexity(
        model=model_path.name,
        ppl=math.exp(nll / max(1, scored)),
        tokens_scored=scored,
        n_ctx=n_ctx,
        text_id=text_id,
        seconds=time.perf_counter() - started,
    )


def _nll_sum(logits: np.ndarray, targets: np.ndarray) -> float:
    """Sum over rows of -log softmax(logits)[target]."""
    top = logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float((log_z - logits[np.arange(len(targets)), targets]).sum())
