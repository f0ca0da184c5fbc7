"""The context-shift lever: a trimmed history dropped from the KV cache vs evaluated again.

Both arms start from the same cache: a conversation that has just filled its token
budget, evaluated in full.  The next prompt has lost its oldest exchanges.  OFF
evaluates everything after the system prompt again; ON shifts the kept tokens down
(``app/engines/kv_shift.py``).  Quality: the mean negative log-likelihood of a fixed,
human-written reply after each arm's cache (lower is better; equal means no harm).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.bench.levers import Lever, Rig, interleave
from app.bench.levers_llm import forget
from app.core.engines import ChatMessage
from app.core.history import History

BUDGET_TOKENS = 600  # small enough that filling it takes seconds, large enough to matter
REPLY = "Well, it is a small number, but I like Lisbon: its hills, the old trams and the evening light."


def filled_conversation(llm: Any, system: str) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """(the last prompt before a trim, the first after it), with fixed exchanges."""
    history = History(system, BUDGET_TOKENS, llm.count_tokens)
    before: list[ChatMessage] = []
    for i in range(200):
        ask = f"Tell me one fact about the number {i} and a city you like."
        prompt = history.messages_for(ask)
        if before and prompt[1] != before[1]:  # the oldest exchange is gone: this prompt trims
            return before, prompt
        before = prompt
        history.record(ask, f"The number {i} is {'even' if i % 2 == 0 else 'odd'}, and I like Porto.")
    raise RuntimeError("the history never trimmed")


def reply_nll(llm: Any, messages: list[ChatMessage]) -> float:
    """Mean -log p of ``REPLY``'s tokens after ``messages``, read from the cache as it stands."""
    engine = llm._llm
    tokens = llm.prompt_tokens(messages)
    llm.prefill(messages)  # evaluates at least the last token: fresh logits
    total = 0.0
    for token in engine.tokenize(REPLY.encode(), add_bos=False, special=False):
        logits = np.ctypeslib.as_array(engine._ctx.get_logits(), shape=(engine._n_vocab,)).astype(np.float64)
        top = logits.max()
        total += float(np.log(np.exp(logits - top).sum()) + top - logits[token])
        engine.eval([token])
    count = engine.n_tokens - len(tokens)
    engine.n_tokens = len(tokens)  # the reply is not part of the conversation
    return total / max(1, count)


def lever_context_shift(rig: Rig) -> Lever:
    llm = rig.llm
    lever = Lever(
        "context shift on trim",
        "history evaluated again",
        "trimmed block dropped from the cache",
        (("prefill_ms", "prompt after a trim (ms)"), ("evaluated_tokens", "tokens evaluated")),
    )
    before, after = filled_conversation(llm, rig.config.system_prompt)
    saved = llm.context_shift

    def arm(shift: bool):
        def run(_i: int) -> dict:
            def go() -> dict:
                forget(llm)
                llm.context_shift = True
                llm.prefill(before)
                llm.context_shift = shift
                started = time.perf_counter()
                evaluated = llm.prefill(after)
                elapsed = (time.perf_counter() - started) * 1000
                return {"prefill_ms": elapsed, "evaluated_tokens": evaluated, "nll": reply_nll(llm, after)}

            try:
                return rig.on_llm(go)
            finally:
                llm.context_shift = saved

        return run

    interleave(lever, rig.reps, arm(False), arm(True))
    off = float(np.median([s["nll"] for s in lever.off]))
    on = float(np.median([s["nll"] for s in lever.on]))
    lever.quality = f"reply NLL {off:.3f} → {on:.3f} ({(on / off - 1) * 100:+.1f}%)"
    lever.extra = {"prompt_tokens": len(llm.prompt_tokens(after)), "nll": {"off": off, "on": on}}
    return lever
