"""The KV cache as levers: its type (8-bit vs 16-bit K and V), and the attention kernel that reads it.

Every token of a reply reads the whole cache, so both cost decode speed more
as the conversation grows: each is measured on the turn-3 prompt and on one
of ~600 tokens (the history budget's size). The type's quality guard is
perplexity; the kernel's is the same greedy reply, token for token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from app.bench.levers import Lever, Rig, interleave
from app.bench.levers_llm import LONG_ASK, PROMPT_MAX_TOKENS, forget, timed_reply, tuned
from app.bench.perplexity import perplexity
from app.core.engines import ChatMessage


def _prompts(rig: Rig) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """The turn-3 prompt and one of ~600 tokens (the history budget's size), both ending in the long ask."""
    return [*rig.history(), ChatMessage("user", LONG_ASK)], [*rig.history() * 5, ChatMessage("user", LONG_ASK)]


def _sample(rig: Rig, llm: object, turn3: list[ChatMessage], long_prompt: list[ChatMessage]) -> dict:
    """Greedy 40-token replies to both prompts from an empty cache: the turn-3 figures and the long one's TPS."""
    with tuned(llm, PROMPT_MAX_TOKENS):
        forget(llm)
        short = rig.on_llm(lambda: timed_reply(llm, turn3, PROMPT_MAX_TOKENS))
        forget(llm)
        long = rig.on_llm(lambda: timed_reply(llm, long_prompt, PROMPT_MAX_TOKENS))
    return {**short, "long_tps": long["tps"], "long_first": long["first"], "long_text": long["text"]}


def lever_kv_cache(rig: Rig) -> Lever:
    from app.engines.llm_llama import LlamaCppLlm, kv_cache_options
    from app.model_registry import resolve

    cfg = rig.config
    path = resolve("llm", cfg.llm_model)
    lever = Lever(
        "KV cache f16 (flash attention)",
        "q8_0 K and V, flash attention (the default until 2026-12-07)",
        "f16 K and V, flash attention",
        (
            ("ttft_ms", "cold TTFT, turn 3 (ms)"),
            ("tps", "TPS over 40 tokens, turn 3"),
            ("long_tps", "TPS over 40 tokens, ~600-token prompt"),
        ),
    )
    models = {
        arm: rig.on_llm(lambda kind=kind: LlamaCppLlm(path, threads=cfg.llm_threads, kv_cache=kind, temperature=0))
        for arm, kind in (("off", "q8_0"), ("on", "f16"))
    }
    turn3, long_prompt = _prompts(rig)
    sizes = {name: models["off"].count_tokens(p) for name, p in (("turn3", turn3), ("long", long_prompt))}

    def arm(name: str) -> Callable[[int], dict]:
        return lambda _i: _sample(rig, models[name], turn3, long_prompt)

    interleave(lever, rig.reps, arm("off"), arm("on"))
    models.clear()
    ppl = {
        arm: rig.on_llm(lambda kind=kind: perplexity(path, threads=cfg.llm_threads, **kv_cache_options(kind)))
        for arm, kind in (("off", "q8_0"), ("on", "f16"))
    }
    change = (ppl["on"].ppl / ppl["off"].ppl - 1) * 100
    same = sum(a["first"] == b["first"] for a, b in zip(lever.off, lever.on, strict=True))
    lever.quality = (
        f"PPL {ppl['off'].ppl:.3f} → {ppl['on'].ppl:.3f} ({change:+.2f}%); "
        f"same first token (greedy) {same}/{len(lever.off)}"
    )
    lever.extra = {"perplexity": {k: vars(v) for k, v in ppl.items()}, "prompt_tokens": sizes}
    return lever


def lever_attention_kernel(rig: Rig) -> Lever:
    """llama.cpp's flash-attention kernel vs Doppel's grouped decode kernel, one engine, switched per reply."""
    from app.engines.llm_attention import attention_kernel, grouped_attention_built
    from app.engines.llm_llama import LlamaCppLlm
    from app.model_registry import resolve

    cfg = rig.config
    path = resolve("llm", cfg.llm_model)
    lever = Lever(
        "attention kernel for decoding (packaging/llama-patches)",
        "llama.cpp's own: a head and a cached position at a time",
        "Doppel's: each cached row once for its query heads, positions split between threads",
        (
            ("tps", "TPS over 40 tokens, turn 3"),
            ("long_tps", "TPS over 40 tokens, ~600-token prompt"),
        ),
    )
    llm = rig.on_llm(lambda: LlamaCppLlm(path, threads=cfg.llm_threads, kv_cache="f16", temperature=0))
    turn3, long_prompt = _prompts(rig)

    def arm(grouped: bool) -> Callable[[int], dict]:
        def run(_i: int) -> dict:
            with attention_kernel(grouped):
                return _sample(rig, llm, turn3, long_prompt)

        return run

    interleave(lever, rig.reps, arm(False), arm(True))
    same = sum(
        a["text"] == b["text"] and a["long_text"] == b["long_text"] for a, b in zip(lever.off, lever.on, strict=True)
    )
    nll = {}
    for name, grouped in (("off", False), ("on", True)):
        with attention_kernel(grouped):
            nll[name] = rig.on_llm(lambda: decoded_nll(llm, llm.prompt_tokens(long_prompt)))
    built = "" if grouped_attention_built() else " (this build has no Doppel patch: both arms ran llama.cpp's kernel)"
    lever.quality = (
        f"NLL of the ~600-token prompt's last {NLL_TOKENS} tokens, decoded one at a time: "
        f"{nll['off']:.4f} → {nll['on']:.4f}; the same 40-token greedy replies on both prompts: "
        f"{same}/{len(lever.off)}{built}"
    )
    lever.extra = {
        "prompt_tokens": {"turn3": llm.count_tokens(turn3), "long": llm.count_tokens(long_prompt)},
        "decoded_nll": nll,
    }
    return lever


NLL_TOKENS = 96


def decoded_nll(llm: Any, tokens: list[int]) -> float:
    """Mean negative log-likelihood of the last ``NLL_TOKENS`` tokens, each decoded alone after its prefix.

    Greedy replies part at the first near-tie, so they cannot tell a sound kernel from
    a slightly wrong one; the likelihood of a fixed text, read token by token through
    the decode path, can.
    """
    import llama_cpp

    model = llm._llm
    head, tail = tokens[:-NLL_TOKENS], tokens[-NLL_TOKENS:]
    forget(llm)
    model.eval(head)
    total = 0.0
    for token in tail:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(model.ctx, -1), shape=(model.n_vocab(),))
        shifted = logits.astype(np.float64) - logits.max()
        total -= shifted[token] - np.log(np.exp(shifted).sum())
        model.eval([token])
    forget(llm)
    return total / len(tail)
