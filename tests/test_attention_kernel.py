"""Doppel's flash-attention decode kernel (packaging/llama-patches): built in, and the same model as llama.cpp's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.bench.ppl_text import TEXT as PROSE
from app.engines.llm_attention import attention_kernel, describe_attention, grouped_attention_built

PATCH = Path(__file__).resolve().parents[1] / "packaging" / "llama-patches" / "flash-attn-decode-grouped.patch"


def _cpu_can_run_it() -> bool:
    """x86 with AVX2, FMA and F16C: where the patch compiles its kernel in."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return {"avx2", "fma", "f16c"} <= set(flags.split(":", 1)[1].split())


def test_the_patch_is_a_unified_diff_of_llamas_cpu_backend() -> None:
    text = PATCH.read_text()
    assert "--- a/vendor/llama.cpp/ggml/src/ggml-cpu/ops.cpp" in text
    assert "DOPPEL_FA_DECODE_GROUPED" in text  # the switch the bench and doctor rely on


@pytest.mark.skipif(not _cpu_can_run_it(), reason="the kernel is compiled for x86 with AVX2, FMA and F16C only")
def test_setup_built_llama_cpp_with_the_kernel() -> None:
    assert grouped_attention_built(), "packaging/setup.sh did not apply packaging/llama-patches"
    assert describe_attention().startswith("Doppel's")
    with attention_kernel(False):
        assert "=0" in describe_attention()


def _empty(model) -> None:
    """An empty KV cache and token record (``model`` is a ``llama_cpp.Llama``)."""
    import llama_cpp

    model.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(model.ctx), True)


def _logits(model, ctx) -> np.ndarray:
    import llama_cpp

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(model.n_vocab(),)).copy()


@pytest.mark.skipif(not _cpu_can_run_it(), reason="the kernel is compiled for x86 with AVX2, FMA and F16C only")
def test_both_kernels_give_the_same_next_tokens_after_a_long_prompt(llm) -> None:
    """Teacher-forced on llama.cpp's own tokens: wherever its choice is clear, Doppel's kernel makes the same one."""

    model = llm._llm
    text = PROSE  # a fixed text: the README changes
    prompt = model.tokenize(text.encode(), add_bos=False)[:420]  # its last 36 go through the kernel as a batch
    rows: dict[bool, list[np.ndarray]] = {False: [], True: []}
    with llm._lock:
        for grouped in (False, True):
            with attention_kernel(grouped):
                _empty(model)
                model.eval(prompt)
                chosen: list[int] = []
                for step in range(24):
                    rows[grouped].append(_logits(model, model.ctx))
                    token = int(rows[False][step].argmax())  # llama.cpp's choice drives both runs
                    chosen.append(token)
                    model.eval([token])
        _empty(model)
    own, doppel = np.stack(rows[False]), np.stack(rows[True])
    assert np.abs(own - doppel).max() < 3.0  # logits span ~40: a wrong head or position would be far off
    assert np.abs(own[1:] - doppel[1:]).max() > 0.0  # the switch took effect (f32 vs f16 sums differ a little)
    top2 = np.sort(own, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1.0
    assert clear.sum() >= 6  # enough clear choices to compare
    assert (own.argmax(axis=1) == doppel.argmax(axis=1))[clear].all()


@pytest.mark.skipif(not _cpu_can_run_it(), reason="the kernel is compiled for x86 with AVX2, FMA and F16C only")
def test_one_thread_and_two_decode_the_very_same_logits(llm) -> None:
    """The CPU plan may drop a reply to one thread mid-way; the kernel's sums must not depend on it."""

    model = llm._llm
    text = PROSE  # a fixed text: the README changes
    prompt = model.tokenize(text.encode(), add_bos=False)[:540]  # past 512: llama.cpp itself splits by threads there
    runs: list[np.ndarray] = []
    with llm._lock:
        for threads in (2, 1):
            _empty(model)
            llm._apply_threads(2)
            model.eval(prompt)
            llm._apply_threads(threads)
            rows = []
            for _ in range(12):
                rows.append(_logits(model, model.ctx))
                model.eval([int(rows[-1].argmax())])
            runs.append(np.stack(rows))
        llm._apply_threads(llm.threads)
        _empty(model)
    assert np.array_equal(runs[0], runs[1])


@pytest.mark.skipif(not _cpu_can_run_it(), reason="the kernel is compiled for x86 with AVX2, FMA and F16C only")
def test_a_token_gets_the_same_attention_alone_or_in_a_short_batch(llm) -> None:
    """The prefix cache evaluates a prompt's last words in batches of any size: the reply must not depend on it."""

    model = llm._llm
    text = PROSE  # a fixed text: the README changes
    prompt = model.tokenize(text.encode(), add_bos=False)[:420]
    runs: list[np.ndarray] = []
    with llm._lock:
        for one_by_one in (True, False):
            _empty(model)
            model.eval(prompt[:400])
            if one_by_one:
                for token in prompt[400:410]:
                    model.eval([token])
            else:
                model.eval(prompt[400:410])
            rows = [_logits(model, model.ctx)]
            for token in prompt[410:]:
                model.eval([token])
                rows.append(_logits(model, model.ctx))
            runs.append(np.stack(rows))
        _empty(model)
    assert np.array_equal(runs[0], runs[1])
