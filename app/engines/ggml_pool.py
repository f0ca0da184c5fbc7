"""A persistent ggml thread team for one llama.cpp context, as ``llama-bench`` runs it.

Without one (llama-cpp-python's default), ggml built without OpenMP starts a
fresh worker thread for every ``llama_decode`` and joins it at the end: one
thread created and scheduled per token.  A persistent team keeps its workers
and, after each graph, lets them poll for new work for a short while before
they sleep.  ``poll`` is ggml's level (0-100): at its default of 50 a worker
spun ~170 ms of CPU after every reply, time the face and Piper need; at 1
it spins ~6 ms, so the team is paused (workers asleep) whenever the LLM
stops, and the next decode wakes it.

llama-cpp-python does not bind these calls, so they go through ``ctypes``
on the same shared libraries it loaded.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

GGML_MAX_N_THREADS = 512  # ggml.h: the size of the cpumask in the params struct
DEFAULT_POLL = 1


class _PoolParams(ctypes.Structure):
    """``struct ggml_threadpool_params`` (ggml-cpu.h)."""

    _fields_ = [
        ("cpumask", ctypes.c_bool * GGML_MAX_N_THREADS),  # all false: the process's own affinity
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),  # enum ggml_sched_priority; 0 = normal
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


class _Libs:
    """The three libraries, with argument types declared once."""

    def __init__(self, lib_dir: Path) -> None:
        self.base = ctypes.CDLL(str(lib_dir / "libggml-base.so"))
        self.cpu = ctypes.CDLL(str(lib_dir / "libggml-cpu.so"))
        self.llama = ctypes.CDLL(str(lib_dir / "libllama.so"))
        self.base.ggml_threadpool_params_default.restype = _PoolParams
        self.base.ggml_threadpool_params_default.argtypes = [ctypes.c_int]
        self.cpu.ggml_threadpool_new.restype = ctypes.c_void_p
        self.cpu.ggml_threadpool_new.argtypes = [ctypes.POINTER(_PoolParams)]
        for name in ("ggml_threadpool_free", "ggml_threadpool_pause"):
            getattr(self.cpu, name).argtypes = [ctypes.c_void_p]
        self.llama.llama_attach_threadpool.argtypes = [ctypes.c_void_p] * 3
        self.llama.llama_detach_threadpool.argtypes = [ctypes.c_void_p]


def _libraries() -> _Libs | None:
    """The libraries llama-cpp-python loaded (its ``LLAMA_CPP_LIB_PATH`` override too); None without the API."""
    import llama_cpp.llama_cpp as bindings

    lib_dir = Path(getattr(bindings, "_base_path", Path(bindings.__file__).parent / "lib"))
    try:
        return _Libs(lib_dir)
    except (OSError, AttributeError) as exc:  # a build without these symbols (or on another OS)
        _log.info("no persistent ggml thread team (%s): one is started per token", exc)
        return None


class ThreadTeam:
    """``threads`` workers kept for a context's whole life; ``pause()`` puts them to sleep until the next decode."""

    def __init__(self, threads: int, poll: int = DEFAULT_POLL) -> None:
        self.threads = threads
        self.poll = poll
        self._libs = _libraries()
        self._pool: int | None = None
        self._ctx: Any = None
        if self._libs is None:
            return
        params = self._libs.base.ggml_threadpool_params_default(threads)
        params.poll = poll
        self._pool = self._libs.cpu.ggml_threadpool_new(ctypes.byref(params)) or None

    @property
    def active(self) -> bool:
        """Attached to a context: its decodes run on this team."""
        return self._pool is not None and self._ctx is not None

    def attach(self, ctx: Any) -> bool:
        """Decode ``ctx``'s graphs (single tokens and batches alike) on this team; False when there is none."""
        if self._pool is None or self._libs is None:
            return False
        self._libs.llama.llama_attach_threadpool(ctx, self._pool, self._pool)
        self._ctx = ctx
        return True

    def detach(self) -> None:
        """Back to a worker started per token (the bench's OFF arm); the team stays for a later attach."""
        if self._libs is not None and self._ctx is not None:
            self._libs.llama.llama_detach_threadpool(self._ctx)
        self._ctx = None

    def pause(self) -> None:
        """Workers sleep now instead of polling; the next decode wakes them (ggml resumes a paused team itself)."""
        if self._pool is not None and self._libs is not None:
            self._libs.cpu.ggml_threadpool_pause(self._pool)

    def free(self) -> None:
        """Join the workers; only once nothing decodes on the context any more (the engine is gone)."""
        if self._libs is not None and self._pool is not None:
            self._libs.cpu.ggml_threadpool_free(self._pool)
        self._pool = self._ctx = None


def checked_team(llm: Any, threads: int) -> ThreadTeam | None:
    """A team attached to ``llm``'s context (a ``llama_cpp.Llama``) if it decodes what a worker per token does.

    With llama.cpp's repacked weights (an IQ4_NL copy, ``--repack``) two threads on a persistent
    team decoded nonsense on an AMD EPYC host, while Q4_1 and Q8_0 files decode the same tokens
    either way; a 5-token batch and one single token, with and without the team, keep any such
    file safe.  Any failure means no team: the engine decodes as llama-cpp-python does.
    """
    team: ThreadTeam | None = None
    try:
        team = ThreadTeam(threads)
        if team.attach(llm.ctx) and _decodes_alike(llm, team):
            return team
    except Exception as exc:  # a team must never stop the model from loading
        _log.warning("no persistent thread team (%s): one worker is started per token", exc)
    if team is not None:
        team.detach()
        team.free()
    return None


def _decodes_alike(llm: Any, team: ThreadTeam) -> bool:
    import llama_cpp
    import numpy as np

    probe = llm.tokenize(b"The capital of France is", add_bos=False)
    runs = []
    for attached in (True, False):
        if not attached:
            team.detach()
        rows = []
        llm.reset()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        for tokens in (probe, probe[:1]):  # a batch, then a single token (the kernels differ)
            llm.eval(tokens)
            row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            rows.append(np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).copy())
        runs.append(rows)
    llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
    alike = all(np.allclose(a, b, rtol=1e-3, atol=1e-2) for a, b in zip(*runs, strict=True))
    if alike:
        team.attach(llm.ctx)
    else:
        _log.warning("the ggml thread team changed the logits: one worker is started per token instead")
    return alike
