"""Piper streamed: a sentence's first 0.23 s comes first, and the pieces are the whole decode's samples."""

from __future__ import annotations

import numpy as np

from app.engines import tts_stream
from app.engines.tts_stream import CONTEXT_FRAMES, FIRST_FRAMES, pieces, split_graph

SENTENCE = "The capital of France is Paris, a lovely city by the river."


def test_a_streamed_sentence_is_the_whole_decode_cut_into_pieces(tts) -> None:
    voice = tts.streamed_voice
    assert voice is not None, "the bundled voice splits before its vocoder"
    chunks = list(tts.synthesize(SENTENCE))
    latent, samples = voice.frames(voice.voice.phonemes_to_ids(voice.voice.phonemize(SENTENCE)[0]))
    whole = np.clip(voice.decode(latent, 0, latent.shape[2]) * voice.gain, -1.0, 1.0)
    assert len(chunks) == len(list(pieces(latent.shape[2]))) >= 2
    assert len(chunks[0].audio) == FIRST_FRAMES * voice.hop  # what the listener waits for: 0.23 s
    streamed = np.concatenate([c.audio for c in chunks])
    assert len(streamed) == len(whole) == int(samples.sum())
    assert float(np.max(np.abs(streamed - whole))) < 1e-4  # the decoder's context covers every cut
    for chunk in chunks:  # each piece carries its own mouth timings, counted from its start
        assert chunk.phonemes and sum(p.length for p in chunk.phonemes) == len(chunk.audio)
        assert chunk.phonemes[0].start == 0


def test_the_first_piece_is_vocoded_alone_before_the_rest(tts, monkeypatch) -> None:
    voice = tts.streamed_voice
    decoded: list[int] = []  # frames given to the decoder, per run
    back_run = voice.back.run

    def run(outputs, feeds, run_options=None):
        decoded.append(feeds[tts_stream.LATENT].shape[2])
        return back_run(outputs, feeds, run_options)

    monkeypatch.setattr(voice.back, "run", run)
    first = next(iter(tts.synthesize(SENTENCE)))
    assert decoded == [FIRST_FRAMES + CONTEXT_FRAMES]  # handed out before any other frame was vocoded
    assert len(first.audio) == FIRST_FRAMES * voice.hop


def test_the_voice_gain_keeps_a_reply_below_full_scale(tts) -> None:
    """One gain for the voice (a stream cannot know a sentence's peak): measured at load, no hard clipping."""
    reply = "Sure! Here is what I would do. First, take a deep breath, and then tell me more about it."
    audio = np.concatenate([c.audio for c in tts.synthesize(reply)])
    assert 0.3 < float(np.max(np.abs(audio))) < 1.0
    assert float(np.mean(np.abs(audio) >= 0.999)) < 1e-4


def test_a_graph_without_the_cut_is_not_split() -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "plain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])],
    )
    assert split_graph(helper.make_model(graph), "output") is None  # the voice then vocodes whole sentences
