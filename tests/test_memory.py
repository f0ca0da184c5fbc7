"""Memory that engines free goes back to the OS, so a long demo does not ratchet up.

These compare resident size before and after repeated work in this process; the
200-turn figures are a benchmark (``python -m app.bench.soak``, docs/soak.md).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from app.core.memory import release_free_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and trims glibc's heap")


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_freed_heap_is_returned_to_the_os() -> None:
    """200 MB of blocks freed between live ones stay resident until the trim."""
    blocks, pins = [], []
    for _ in range(3200):
        blocks.append(np.ones(8192, dtype=np.float64))  # 64 KiB: from the heap, not mmap
        pins.append(bytearray(4096))  # live between the blocks: the heap cannot shrink by itself
    before = rss_mb()
    del blocks
    held = rss_mb()
    assert release_free_memory()
    after = rss_mb()
    print(f"\nRSS with blocks {before:.0f} MB, freed {held:.0f} MB, trimmed {after:.0f} MB")
    assert after < held - 100, (before, held, after)
    del pins


def test_speaking_long_sentences_again_and_again_does_not_grow(tts) -> None:
    """Piper without ONNX Runtime's arena: sentences of every length, again and again, cost no more memory.

    With the arena on, eight sentences of 30-230 characters took a Piper-only process from
    232 to 581 MB; the arena keeps every peak and grows again when a new length does not fit.
    """
    words = "the road climbs over the hill and the river bends past the old mill by the quiet town square " * 3
    sentences = [words[:n].rsplit(" ", 1)[0].capitalize() + "." for n in (30, 100, 160, 60, 230, 130)]
    for text in sentences:
        list(tts.synthesize(text))
    release_free_memory()
    settled = rss_mb()
    for text in reversed(sentences * 2):
        list(tts.synthesize(text))
    release_free_memory()
    grown = rss_mb() - settled
    print(f"\nRSS {settled:.0f} MB after six sentences of 30-230 characters, {grown:+.1f} MB after twelve more")
    assert grown < 15, grown
