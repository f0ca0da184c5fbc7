"""Untie a GGUF's output layer: give the model an ``output.weight`` of its own, a byte copy of its embeddings.

SmolLM2 ties its output projection to its token embeddings: the file holds one
Q8_0 ``token_embd.weight`` (49,152 x 576) and llama.cpp uses it both to look up
input tokens and as the output layer, the largest matrix multiplied at every
token.  With the same bytes as a separate ``output.weight``, bare
``llama_decode`` (2 threads, 250 tokens of context) ran 11.7-11.8 ms per token
against 12.2-12.4 tied (5 interleaved rounds each, load order swapped between
two processes, 2026-12-06 05:40 UTC): ~5 % faster.  A first run that loaded
the tied file first showed 22 %; the order was most of that.  The weights are
the same, so the perplexity and greedy replies are unchanged; the file grows by
the copied tensor (~30 MB on disk, ~28 MB of RSS).  ``doppel bench --levers``
re-measures it ("output layer untied").

Only the header is rewritten: the tensor data is copied as it is, with the
embedding's bytes appended once more at the end.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"GGUF"
EMBEDDINGS = "token_embd.weight"
OUTPUT = "output.weight"
DEFAULT_ALIGNMENT = 32
# Bytes of the fixed-size GGUF value types (uint8 ... float64), by type id.
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
# ggml types the copy may meet as embeddings: id -> (bytes per block, values per block).
_BLOCKS = {
    **{0: (4, 1), 1: (2, 1), 30: (2, 1)},  # f32, f16, bf16
    **{2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32), 20: (18, 32)},  # q4_0 ... q8_0, iq4_nl
    **{10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256)},  # q2_K ... q6_K
}


class GgufError(ValueError):
    """The file is not a GGUF this module can rewrite."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int  # from the start of the data section

    @property
    def n_bytes(self) -> int:
        if self.ggml_type not in _BLOCKS:
            raise GgufError(f"{self.name} has ggml type {self.ggml_type}, which this copy does not know")
        block_bytes, block_values = _BLOCKS[self.ggml_type]
        count = 1
        for dim in self.dims:
            count *= dim
        return count // block_values * block_bytes


@dataclass(frozen=True)
class Header:
    version: int
    kv_count: int
    kv_bytes: bytes  # the metadata section, kept verbatim
    tensors: list[TensorInfo]
    alignment: int
    data_start: int

    def tensor(self, name: str) -> TensorInfo | None:
        return next((t for t in self.tensors if t.name == name), None)


class _Reader:
    def __init__(self, raw: bytes | mmap.mmap) -> None:
        self.raw, self.pos = raw, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.raw):
            raise GgufError("the header ends early: the file is truncated")
        chunk = self.raw[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.u64()).decode("utf-8")

    def skip_value(self, kind: int) -> None:
        if kind == _STRING:
            self.take(self.u64())
        elif kind == _ARRAY:
            item, count = self.u32(), self.u64()
            if item in _SCALAR_BYTES:
                self.take(_SCALAR_BYTES[item] * count)
            else:
                for _ in range(count):
                    self.skip_value(item)
        elif kind in _SCALAR_BYTES:
            self.take(_SCALAR_BYTES[kind])
        else:
            raise GgufError(f"unknown metadata value type {kind}")


def read_header(raw: bytes | mmap.mmap) -> Header:
    """The metadata and tensor table of the GGUF in ``raw``."""
    reader = _Reader(raw)
    if reader.take(4) != MAGIC:
        raise GgufError("not a GGUF file (bad magic)")
    version = reader.u32()
    if version < 2:
        raise GgufError(f"GGUF version {version} is too old")
    n_tensors, n_kv = reader.u64(), reader.u64()
    kv_start = reader.pos
    alignment = DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key, kind = reader.string(), reader.u32()
        if key == "general.alignment" and kind == _UINT32:
            alignment = struct.unpack("<I", raw[reader.pos : reader.pos + 4])[0]
        reader.skip_value(kind)
    kv_bytes = raw[kv_start : reader.pos]
    tensors = []
    for _ in range(n_tensors):
        name = reader.string()
        dims = tuple(reader.u64() for _ in range(reader.u32()))
        ggml_type, offset = reader.u32(), reader.u64()
        tensors.append(TensorInfo(name, dims, ggml_type, offset))
    return Header(version, n_kv, kv_bytes, tensors, alignment, _align(reader.pos, alignment))


def is_tied(path: Path) -> bool:
    """Whether the GGUF at ``path`` has embeddings and no output layer of its own (False if unreadable)."""
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            header = read_header(mapped)  # only the header's pages are read, not the weights
    except (OSError, ValueError, UnicodeDecodeError):  # GgufError is a ValueError; so is an empty file's mmap
        return False
    embeddings = header.tensor(EMBEDDINGS)
    return embeddings is not None and embeddings.ggml_type in _BLOCKS and header.tensor(OUTPUT) is None


def untie(source: Path, target: Path) -> None:
    """Write ``source`` to ``target`` with ``output.weight`` as a copy of ``token_embd.weight``."""
    raw = source.read_bytes()
    header = read_header(raw)
    embeddings = header.tensor(EMBEDDINGS)
    if embeddings is None or header.tensor(OUTPUT) is not None:
        raise GgufError(f"{source.name} has no tied output layer to untie")
    data = raw[header.data_start :]
    start, size = embeddings.offset, embeddings.n_bytes
    if start + size > len(data):
        raise GgufError(f"{source.name} is truncated: its embeddings run past the end of the file")
    output = TensorInfo(OUTPUT, embeddings.dims, embeddings.ggml_type, _align(len(data), header.alignment))
    table = bytearray(MAGIC + struct.pack("<IQQ", header.version, len(header.tensors) + 1, header.kv_count))
    table += header.kv_bytes
    for info in (*header.tensors, output):
        name = info.name.encode("utf-8")
        table += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(info.dims))
        table += b"".join(struct.pack("<Q", dim) for dim in info.dims)
        table += struct.pack("<IQ", info.ggml_type, info.offset)
    table += bytes(_align(len(table), header.alignment) - len(table))
    with open(target, "wb") as fh:
        fh.write(table)
        fh.write(data)
        fh.write(bytes(output.offset - len(data)))
        fh.write(data[start : start + size])


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment
