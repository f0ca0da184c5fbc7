"""Doppel's flash-attention kernel for decoding (packaging/llama-patches): is it built in, and a switch.

Every decoded token attends to the whole KV cache. llama.cpp's own CPU kernel
takes one head and one cached position at a time, so on two cores a reply after
600 tokens of history decoded at 0.74x the speed of one after 8. The patched
kernel reads each cached row once for the three query heads that share it and
splits positions, not heads, between the threads (0.84x; docs/cpu-plan.md).
It checks ``DOPPEL_FA_DECODE_GROUPED`` at every call, so the bench can time
both kernels in one process, one reply apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SWITCH = "DOPPEL_FA_DECODE_GROUPED"
_MARKER = SWITCH.encode()  # the patched kernel's getenv() name, compiled in only where the kernel is


def _cpu_backend() -> Path | None:
    """llama-cpp-python's ggml CPU library, without loading it."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    found = sorted((Path(spec.origin).parent / "lib").glob("libggml-cpu*"))
    return found[0] if found else None


def grouped_attention_built() -> bool:
    """Whether the installed llama.cpp was compiled with Doppel's decode kernel (an AVX2 x86 build)."""
    library = _cpu_backend()
    try:
        return library is not None and _MARKER in library.read_bytes()
    except OSError:
        return False


def describe_attention() -> str:
    """One line for `doppel doctor`."""
    if not grouped_attention_built():
        return "llama.cpp's own (this build has no Doppel patch: packaging/setup.sh applies it)"
    if os.environ.get(SWITCH) == "0":
        return f"llama.cpp's own ({SWITCH}=0)"
    return f"Doppel's grouped decode kernel ({SWITCH}=0 switches it off)"


@contextmanager
def attention_kernel(grouped: bool) -> Iterator[None]:
    """Decode with Doppel's kernel or llama.cpp's own inside the block; the setting before is restored."""
    saved = os.environ.get(SWITCH)
    os.environ[SWITCH] = "1" if grouped else "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(SWITCH, None)
        else:
            os.environ[SWITCH] = saved
