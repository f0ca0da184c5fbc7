"""One-time re-quantization of a GGUF (to Q8_0, or to IQ4_NL for speed) in the user cache, kept with its checksum.

Measured by `doppel bench --levers` (docs/bench/levers.md): SmolLM2-135M
Q4_1 -> Q8_0 cut cold TTFT by 5-22% in three runs on a shared 2-core machine
(load average 3-10; not yet rerun on a quiet one), at +0.01% perplexity on the
fixed text (28.033 -> 28.035); the bigger file costs ~45 MB of RAM.

``repacked`` makes an IQ4_NL copy instead (opt-in, ``--repack``): llama.cpp's CPU backend repacks
IQ4_NL and Q4_0 weights at load into interleaved rows (``iq4_nl_8x8``/``q4_0_8x8``, the CPU_REPACK
buffer; Q4_1 never gets it), which decodes SmolLM2-135M ~36 % faster than the shipped Q4_1 (bare
decode 170/169 vs 125 tok/s, 15-token prompt eval 37/36 vs 62 ms; 5 interleaved rounds, 2 threads,
2026-12-05).  A second 4-bit rounding costs answers, though: in ``doppel bench --replies`` (3 typed
rounds) the right-answer rate went 67 % -> 58 % for IQ4_NL and 67 % -> 37 % for Q4_0, so IQ4_NL
is the fast copy and the shipped Q4_1 stays the default.  Repacked weights live in ~56 MB of
anonymous memory next to the mapped file; making the copy takes ~15 s once.

The converted file is named after the source's size and mtime, and a sidecar
``<file>.sha256`` (``sha256sum -c`` format) records the sha256 of the copy and
of its source.  Both are checked the first time a process uses the copy
(~0.25 s for the two files on the dev machine, against ~2 s to convert and
~0.45 s to load the model): a truncated or corrupted copy, a missing sidecar
or a source whose bytes changed under the same size and mtime is converted
again, with a warning.  Files are replaced atomically, so another process that
is loading the old copy keeps a whole file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

_log = logging.getLogger(__name__)
LLAMA_FTYPE_MOSTLY_Q8_0 = 7
LLAMA_FTYPE_MOSTLY_Q4_0 = 2
LLAMA_FTYPE_MOSTLY_IQ4_NL = 25
FTYPES = {"Q8_0": LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_0": LLAMA_FTYPE_MOSTLY_Q4_0, "IQ4_NL": LLAMA_FTYPE_MOSTLY_IQ4_NL}
UNTIED_KIND = "untied"  # a copy with its own output layer (gguf_untie)
REPACK_KIND = "IQ4_NL"  # the type llama.cpp repacks that kept the most right answers (see above)
# Sources a fast copy is made from: not a repackable type already, nor k-/i-quants (a second 4-bit
# rounding of those loses more).
REPACK_FROM_MARKERS = ("q4_1", "q5_0", "q5_1", "q8_0", "f16", "bf16", "f32")
OTHER_TYPE_MARKERS = ("q4_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq1", "iq2", "iq3", "iq4")
LOW_BIT_MARKERS = ("q4_0", "q4_1", "q4_k", "q5_0", "q5_1", "q5_k", "q3_k", "q2_k")
SIDECAR_SUFFIX = ".sha256"
STALE_AFTER_S = 7 * 24 * 3600

# Copies whose checksums matched in this process, keyed by (path, size, mtime_ns) of copy and source.
_verified: set[tuple] = set()
_verified_lock = threading.Lock()


def clear_verified() -> None:
    """Forget which copies this process has checked (a test's stand-in for a new process)."""
    with _verified_lock:
        _verified.clear()


def wants_requantize(model_path: Path) -> bool:
    name = model_path.name.lower()
    return any(marker in name for marker in LOW_BIT_MARKERS)


def wants_repack(model_path: Path) -> bool:
    """Whether a fast copy of ``model_path`` makes sense (it is neither Q4_0 already nor a k-/i-quant).

    The last type named in the file name counts: a copy is named ``<source stem>.<size>-<mtime>.IQ4_NL.gguf``.
    """
    name = model_path.name.lower()
    found = [(name.rfind(m), m) for m in (*REPACK_FROM_MARKERS, *OTHER_TYPE_MARKERS) if m in name]
    return bool(found) and max(found)[1] in REPACK_FROM_MARKERS


def copy_path_for(model_path: Path, cache: Path, kind: str) -> Path:
    st = model_path.stat()
    return cache / f"{model_path.stem}.{st.st_size}-{int(st.st_mtime)}.{kind}.gguf"


def q8_path_for(model_path: Path, cache: Path) -> Path:
    return copy_path_for(model_path, cache, "Q8_0")


def repack_path_for(model_path: Path, cache: Path) -> Path:
    return copy_path_for(model_path, cache, REPACK_KIND)


def sidecar_for(target: Path) -> Path:
    return target.with_name(target.name + SIDECAR_SUFFIX)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_sidecar(target: Path) -> tuple[str, str] | None:
    """(sha256 of the copy, sha256 of its source) as recorded, or None if missing or unreadable."""
    try:
        lines = sidecar_for(target).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    own = source = None
    for line in lines:
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            return None
        if name == target.name:
            own = digest
        else:
            source = digest
    return (own, source) if own and source else None


def _write_sidecar(target: Path, own: str, source_path: Path, source: str) -> None:
    partial = sidecar_for(target).with_suffix(f".partial-{os.getpid()}")
    partial.write_text(f"{own}  {target.name}\n{source}  {source_path.resolve()}\n", encoding="utf-8")
    partial.replace(sidecar_for(target))


def _identity(target: Path, source: Path) -> tuple:
    a, b = target.stat(), source.stat()
    return (str(target), a.st_size, a.st_mtime_ns, str(source), b.st_size, b.st_mtime_ns)


def check_cached(target: Path, source: Path) -> str | None:
    """Why the cached copy cannot be used (None: it can); hashes once per process per file state."""
    try:
        key = _identity(target, source)
    except OSError as exc:
        return f"cannot be read ({exc})"
    with _verified_lock:
        if key in _verified:
            return None
    recorded = read_sidecar(target)
    if recorded is None:
        return "has no readable checksum"
    if sha256_of(target) != recorded[0]:
        return "does not match its checksum"
    if sha256_of(source) != recorded[1]:
        return "was made from a different source"
    with _verified_lock:
        _verified.add(key)
    return None


def requantized(model_path: Path, cache: Path, threads: int = 2) -> Path:
    """The Q8_0 copy of ``model_path`` (made now if missing or damaged); the source on any failure."""
    if not wants_requantize(model_path):
        return model_path
    return _cached_copy(model_path, cache, "Q8_0", _quantizer(model_path, threads, LLAMA_FTYPE_MOSTLY_Q8_0))


def repacked(model_path: Path, cache: Path, threads: int = 2) -> Path:
    """The IQ4_NL copy of ``model_path``, which llama.cpp repacks for its fast CPU kernels (made now if
    missing or damaged); the source if it is repackable already, a k-/i-quant, or on any failure."""
    if not wants_repack(model_path):
        return model_path
    return _cached_copy(model_path, cache, REPACK_KIND, _quantizer(model_path, threads, FTYPES[REPACK_KIND]))


def untied(model_path: Path, cache: Path, threads: int = 2) -> Path:
    """A copy of ``model_path`` whose output layer is its own tensor (``gguf_untie``: same weights, faster
    decode); the source when it has an output layer already, or on any failure."""
    from app.engines.gguf_untie import is_tied, untie

    if not is_tied(model_path):
        return model_path
    return _cached_copy(model_path, cache, UNTIED_KIND, lambda partial: untie(model_path, partial))


def _quantizer(model_path: Path, threads: int, ftype: int) -> Callable[[Path], None]:
    return lambda partial: _quantize(model_path, partial, threads, ftype)


def _cached_copy(model_path: Path, cache: Path, kind: str, write: Callable[[Path], None]) -> Path:
    """The cached ``kind`` copy of ``model_path``, made by ``write(partial_path)`` when missing or damaged."""
    target = copy_path_for(model_path, cache, kind)
    if target.exists():
        problem = check_cached(target, model_path)
        if problem is None:
            return target
        _log.warning("cached %s %s; converting it again", target.name, problem)
    try:
        _convert(model_path, target, write)
    except Exception as exc:  # an optimisation only: fall back to the original file
        _log.warning("could not make the %s copy of %s (%s); using it as it is", kind, model_path, exc)
        return model_path
    # Copies of an older install go, but only once unused for a week: two installs of the same model
    # (say the app from source and a frozen build) must not delete each other's copy mid-load.
    week_ago = time.time() - STALE_AFTER_S
    for stale in cache.glob(f"{model_path.stem}.*.{kind}.gguf*"):
        if stale not in (target, sidecar_for(target)) and ".partial-" not in stale.name:
            with contextlib.suppress(OSError):
                if stale.stat().st_atime < week_ago and stale.stat().st_mtime < week_ago:
                    stale.unlink()
    _log.info("made the %s copy of %s: %s", kind, model_path.name, target)
    return target


def _convert(model_path: Path, target: Path, write: Callable[[Path], None]) -> None:
    """Write into a partial file, hash it, then move file and sidecar into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    try:
        write(partial)
        own, source = sha256_of(partial), sha256_of(model_path)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    _write_sidecar(target, own, model_path, source)
    with _verified_lock:
        _verified.add(_identity(target, model_path))


def _quantize(model_path: Path, partial: Path, threads: int, ftype: int) -> None:
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = threads
    with suppress_stdout_stderr(disable=False):  # llama.cpp prints one line per tensor
        status = llama_cpp.llama_model_quantize(str(model_path).encode(), str(partial).encode(), params)
    if status != 0:
        raise RuntimeError(f"llama_model_quantize returned {status}")
