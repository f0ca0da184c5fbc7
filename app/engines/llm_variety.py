"""Replies that do not copy earlier replies: llama.cpp's DRY sampler, shown the session's own words.

SmolLM2-135M copies itself. In the 07:12 UTC bench of 2026-12-07 the long
session answered 16 of 22 different questions ("How do bees make honey?",
"What language do people speak in Brazil?") with the sentence it had said to
the fifth ("take a few deep breaths"). The repeat penalty cannot stop that:
llama-cpp-python never shows its sampler the prompt, so the penalty only sees
the reply being written. DRY ("don't repeat yourself") lowers a token's logit
when it would extend a sequence already seen, more with every repeated token
(``multiplier * base ** (length - allowed_length)``). It is shown the earlier
replies of the conversation, and neither the user's words, which a good answer
often echoes, nor the few-shot replies, whose form ("The capital of Italy is
Rome.") a reply is meant to follow. Short shared openings ("The best") stay
cheap; a copied clause becomes unlikely within a few tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.core.engines import ChatMessage

_REMEMBERED = 128  # reply texts whose token ids are kept (a long session has a few dozen)


@dataclass(frozen=True)
class NoRepeat:
    """DRY's settings; the window spans the whole context.

    llama.cpp suggests a multiplier of 0.8. With it the 12:01 bench's long session
    still opened 13 of 20 replies with the same six words ("The best thing you can
    do…", then something new); its 20 transcripts typed through the engine, eleven
    seeds: 6 such replies in 220 at 0.8, 2 at 1.5, 20 in 60 (three seeds) without DRY.
    """

    multiplier: float = 1.5
    base: float = 1.75
    allowed_length: int = 2
    breakers: tuple[str, ...] = ("\n", ":", '"', "*")


def earlier_replies(messages: Sequence[ChatMessage]) -> list[str]:
    """The assistant's turns in a prompt, oldest first."""
    return [m.content for m in messages if m.role == "assistant" and m.content.strip()]


class ReplySampler:
    """Builds the sampler chain of every reply on one ``Llama``: llama-cpp-python's steps, top-k first, and DRY.

    ``generate`` builds its sampler itself, through ``Llama._init_sampler``, when
    its first token is asked for; this object takes that method's place on the
    one instance (``install``). The steps are the library's (penalties, top-k,
    typical, top-p, min-p, temperature, a seeded draw), with two changes:

    - top-k comes first. The library penalises the whole vocabulary (49,152
      tokens for SmolLM2) before keeping the best 40, and the penalties walk all
      of it: sampling took 0.17 ms a token, 0.32 with DRY, against 0.05 with the
      40 kept first (same logits, same process). A token outside the 40 could
      only be chosen if every one of them were penalised below it; at these
      settings top-p and min-p would cut it anyway.
    - DRY follows the penalties when there are earlier replies; a conversation
      without them (every first reply), or a rule of ``None``, has no DRY step.
    """

    def __init__(self, llama: Any, rule: NoRepeat | None = NoRepeat()) -> None:
        self.llama = llama
        self.rule = rule
        self._library_sampler = llama._init_sampler
        self._ids: OrderedDict[str, list[int]] = OrderedDict()
        self._seen: list[int] = []  # the next reply's earlier words, as token ids
        self._newline = llama.tokenize(b"\n", add_bos=False, special=False)

    def install(self) -> None:
        self.llama._init_sampler = self.build

    def prepare(self, messages: Sequence[ChatMessage]) -> None:
        """The earlier replies the next sampler is shown: the conversation's, before the style adds its examples."""
        seen: list[int] = []
        for text in earlier_replies(messages) if self.rule else ():
            seen += self._tokens(text) + self._newline  # a breaker: no match runs from one reply into the next
        self._seen = seen

    def build(self, **sampling: Any) -> Any:
        """``Llama._init_sampler``'s chain, top-k first, with DRY when there are earlier replies to keep away from."""
        llama = self.llama
        temp = sampling.get("temp", 0.8)
        if sampling.get("logits_processor") or sampling.get("grammar") or sampling.get("mirostat_mode") or temp < 0:
            return self._library_sampler(**sampling)  # what the app never asks for: the library's own chain
        from llama_cpp._internals import LlamaSampler

        chain = LlamaSampler()
        chain.add_top_k(sampling.get("top_k", 40))
        chain.add_penalties(
            n_vocab=llama._n_vocab,
            penalty_last_n=llama.last_n_tokens_size,
            penalty_repeat=sampling.get("repeat_penalty", 1.0),
            penalty_freq=sampling.get("frequency_penalty", 0.0),
            penalty_present=sampling.get("presence_penalty", 0.0),
        )
        self._add_dry(chain)
        if temp == 0.0:
            chain.add_greedy()
            return chain
        chain.add_typical(sampling.get("typical_p", 1.0), 1)
        chain.add_top_p(sampling.get("top_p", 0.95), 1)
        chain.add_min_p(sampling.get("min_p", 0.05), 1)
        chain.add_temp(temp)
        chain.add_dist(llama._seed)
        return chain

    def _add_dry(self, chain: Any) -> None:
        rule, llama = self.rule, self.llama
        if rule is None or not self._seen:
            return
        import llama_cpp

        window = llama.n_ctx()
        chain.add_dry(llama._model, rule.multiplier, rule.base, rule.allowed_length, window, list(rule.breakers))
        dry = llama_cpp.llama_sampler_chain_get(chain.sampler, llama_cpp.llama_sampler_chain_n(chain.sampler) - 1)
        for token in self._seen[-window:]:
            llama_cpp.llama_sampler_accept(dry, token)  # DRY alone sees them: the penalties keep to the reply

    def _tokens(self, text: str) -> list[int]:
        ids = self._ids.get(text)
        if ids is None:
            ids = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            self._ids[text] = ids
            if len(self._ids) > _REMEMBERED:
                self._ids.popitem(last=False)
        else:
            self._ids.move_to_end(text)
        return ids
