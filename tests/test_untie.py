"""The untied output layer: the copy holds the same weights, so the model answers exactly as before.

* the copy has an ``output.weight`` whose bytes are the embeddings', and nothing else changed;
* llama.cpp loads it, and a greedy reply is token for token the shipped file's;
* it is made once, checksummed, and made again when damaged; a file that has its own output layer,
  or is not a GGUF, runs as it is (with a warning for a broken one);
* it is opt-in: ``[models] untie = true`` or ``--untie``; otherwise the shipped file runs itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from app.config import Config, load_config
from app.core.engines import ChatMessage
from app.engines import llm_quantize as quant
from app.engines.gguf_untie import EMBEDDINGS, OUTPUT, GgufError, is_tied, read_header, untie
from app.model_registry import resolve

ASK = [ChatMessage("system", "You are a helpful assistant."), ChatMessage("user", "Why is the sky blue?")]


@pytest.fixture(scope="module")
def shipped_and_untied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    source = resolve("llm")
    copy = quant.untied(source, tmp_path_factory.mktemp("untied"))
    assert copy != source, "untying fell back to the source file"
    return source, copy


def _greedy(path: Path, n: int = 40) -> list[str]:
    from app.engines.llm_llama import LlamaCppLlm

    llm = LlamaCppLlm(path, threads=2, max_tokens=n, temperature=0)
    try:
        return [token.text for token in llm.stream_chat(ASK)]
    finally:
        llm._llm.close()  # two 100 MB models need not wait for the garbage collector


def test_the_copy_adds_an_output_layer_with_the_embeddings_bytes(shipped_and_untied) -> None:
    source, copy = shipped_and_untied
    assert is_tied(source) and not is_tied(copy)
    raw_source, raw_copy = source.read_bytes(), copy.read_bytes()
    before, after = read_header(raw_source), read_header(raw_copy)
    assert after.kv_bytes == before.kv_bytes  # the metadata is untouched
    assert after.tensors[:-1] == before.tensors  # every tensor where it was
    output, embeddings = after.tensor(OUTPUT), after.tensor(EMBEDDINGS)
    assert output is not None and embeddings is not None
    assert (output.dims, output.ggml_type) == (embeddings.dims, embeddings.ggml_type)
    assert output.offset % after.alignment == 0

    def data(raw: bytes, header, info) -> bytes:
        return raw[header.data_start + info.offset : header.data_start + info.offset + info.n_bytes]

    assert data(raw_copy, after, output) == data(raw_source, before, before.tensor(EMBEDDINGS))
    assert data(raw_copy, after, embeddings) == data(raw_source, before, before.tensor(EMBEDDINGS))


def test_the_untied_model_answers_token_for_token_like_the_shipped_one(shipped_and_untied) -> None:
    source, copy = shipped_and_untied
    shipped, untied = _greedy(source), _greedy(copy)
    assert len(shipped) >= 10, "the shipped model gave no real reply to compare"
    assert untied == shipped


def test_the_copy_is_cached_and_made_again_when_damaged(shipped_and_untied, tmp_path, caplog) -> None:
    source, _ = shipped_and_untied
    copy = quant.untied(source, tmp_path)
    assert copy == quant.copy_path_for(source, tmp_path, quant.UNTIED_KIND)
    assert quant.read_sidecar(copy) is not None
    made = copy.stat().st_mtime_ns
    assert quant.untied(source, tmp_path) == copy and copy.stat().st_mtime_ns == made  # intact: kept
    assert quant.untied(copy, tmp_path) == copy  # untied already: runs as it is
    with open(copy, "r+b") as fh:  # bit rot in the copied output layer
        fh.seek(-64, 2)
        fh.write(bytes(64))
    quant.clear_verified()
    with caplog.at_level(logging.WARNING):
        assert quant.untied(source, tmp_path) == copy
    assert "does not match its checksum" in caplog.text
    assert not is_tied(copy) and quant.check_cached(copy, source) is None


def test_a_broken_or_foreign_file_runs_as_it_is(tmp_path) -> None:
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"this is not a model" * 100)
    assert quant.untied(not_gguf, tmp_path / "cache") == not_gguf
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(resolve("llm").read_bytes()[:4096])  # the header ends early
    assert not is_tied(cut)
    with pytest.raises(GgufError, match="truncated"):
        untie(cut, tmp_path / "out.gguf")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.gguf"))


def test_untie_is_opt_in(tmp_path, monkeypatch) -> None:
    from app.cli import build_parser

    cfg_file = tmp_path / "doppel.toml"
    cfg_file.write_text("[models]\nuntie = true\n", encoding="utf-8")
    assert load_config(cfg_file).untie_llm is True
    assert Config().untie_llm is False  # opt-in: the levers' TPS did not move
    assert build_parser().parse_args(["--untie", "doctor"]).untie_llm is True
    assert build_parser().parse_args(["--no-untie", "doctor"]).untie_llm is False

    from app import compose

    seen: list[Path] = []
    monkeypatch.setattr("app.engines.llm_llama.LlamaCppLlm", lambda path, **_: seen.append(path))
    shipped = replace(Config(), pick_llm_file=False)  # the file as shipped, whichever this CPU runs faster
    compose.load_local_llm(replace(shipped, untie_llm=False))
    compose.load_local_llm(replace(shipped, untie_llm=True))
    assert seen[0] == resolve("llm") and seen[1] != resolve("llm") and not is_tied(seen[1])
