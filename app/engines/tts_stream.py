"""Piper's voice split before its vocoder: a sentence starts to play before all of it is vocoded.

A Piper voice is one ONNX graph.  Its text encoder, duration predictor and flow
turn phoneme ids into latent frames (one per ``hop_length`` samples); a
HiFi-GAN decoder turns the frames into audio.  The decoder is convolutional
and looks fewer than ``CONTEXT_FRAMES`` frames either side, so a stretch of
frames decoded with that much context around it gives the samples the whole
decode would.  The first 20 frames (0.23 s) then play after the frames and a
short decode, ~60 ms for a first clause here, instead of after the whole
sentence is vocoded (86-134 ms; docs/cpu-plan.md).

Piper scales each sentence to its own peak, which a stream cannot know at its
start.  The streamed voice uses one gain for the voice, measured when it loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from app.core.engines import PhonemeTiming, SpeechChunk

LATENT = "/Mul_7_output_0"  # the flow's frames times the mask: the decoder's only input
DECODED = "/dec/Tanh_output_0"
CONTEXT_FRAMES = 16  # decoded around each piece and dropped (the test checks the samples match)
FIRST_FRAMES = 20  # the first piece of a sentence: what the listener waits for
PIECE_FRAMES = 200  # the rest, in pieces no longer than this
CALIBRATION = "Hello there! It is nice to meet you, and I am happy to help with anything you need."
PEAK = 0.9  # the calibration sentence's peak after the voice's gain


def split_graph(model: Any, alignment: str) -> tuple[bytes, bytes] | None:
    """(phoneme ids -> latent frames and per-id durations, latent frames -> audio), or None if the cut is absent."""
    from onnx.utils import Extractor

    produced = {name for node in model.graph.node for name in node.output}
    if LATENT not in produced or DECODED not in produced or alignment not in produced:
        return None
    extractor = Extractor(model)
    inputs = [i.name for i in model.graph.input]
    front = extractor.extract_model(inputs, [LATENT, alignment])
    back = extractor.extract_model([LATENT], [DECODED])
    return front.SerializeToString(), back.SerializeToString()


def pieces(frames: int) -> Iterator[tuple[int, int]]:
    """Frame ranges a sentence is vocoded in: a short first one, then long ones."""
    start, size = 0, FIRST_FRAMES
    while start < frames:
        end = min(frames, start + size)
        yield start, end
        start, size = end, PIECE_FRAMES


class StreamedVoice:
    """Sentences as pieces of audio; ``front``/``back`` are sessions of ``split_graph``'s two halves."""

    def __init__(self, voice: Any, front: Any, back: Any, scales: tuple[float, float, float]) -> None:
        """``voice``: the ``PiperVoice`` (phonemes and config); ``scales``: noise, length, noise_w."""
        self.voice, self.front, self.back = voice, front, back
        self.hop = int(voice.config.hop_length)
        self.sample_rate = int(voice.config.sample_rate)
        self._scales = np.array((0.0, scales[1], 0.0), dtype=np.float32)  # no prosody noise: the same gain every load
        self.gain = 1.0
        calibration = np.concatenate([c.audio for c in self.sentences(CALIBRATION)])
        self._scales = np.array(scales, dtype=np.float32)
        self.gain = PEAK / max(float(np.max(np.abs(calibration))), 1e-3)

    def sentences(self, text: str) -> Iterator[SpeechChunk]:
        for phonemes in self.voice.phonemize(text):
            if not phonemes:
                continue
            ids = self.voice.phonemes_to_ids(phonemes)
            latent, samples = self.frames(ids)
            timings = _timings(self.voice.config.phoneme_id_map, phonemes, ids, samples)
            for start, end in pieces(latent.shape[2]):
                audio = np.clip(self.decode(latent, start, end) * self.gain, -1.0, 1.0).astype(np.float32)
                span = (start * self.hop, end * self.hop)
                yield SpeechChunk(audio, self.sample_rate, text, _within(timings, *span), continues=start > 0)

    def frames(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The latent frames (1, channels, frames) and each phoneme id's length in samples."""
        feeds = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": self._scales,
        }
        latent, durations = self.front.run(None, feeds)
        return latent, (np.asarray(durations).reshape(-1) * self.hop).astype(np.int64)

    def decode(self, latent: np.ndarray, start: int, end: int) -> np.ndarray:
        """The samples of frames [start, end), decoded with context either side."""
        lo, hi = max(0, start - CONTEXT_FRAMES), min(latent.shape[2], end + CONTEXT_FRAMES)
        audio = self.back.run(None, {LATENT: np.ascontiguousarray(latent[:, :, lo:hi])})[0].reshape(-1)
        return audio[(start - lo) * self.hop : (end - lo) * self.hop]


def _timings(id_map: dict, phonemes: list[str], ids: list[int], samples: np.ndarray) -> tuple[PhonemeTiming, ...]:
    """Each phoneme's sample span: its ids and the pad after it (Piper's layout); () if the ids differ."""
    pad = list(id_map.get("_", []))
    out: list[PhonemeTiming] = []
    at = start = 0
    for phoneme in ["^", *phonemes, "$"]:
        expected = list(id_map.get(phoneme, [])) + (pad if phoneme != "$" else [])
        if ids[at : at + len(expected)] != expected or len(samples) != len(ids):
            return ()  # not the layout this expects: the mouth follows the audio's envelope instead
        length = int(samples[at : at + len(expected)].sum())
        out.append(PhonemeTiming(phoneme, start, length))
        at, start = at + len(expected), start + length
    return tuple(out) if at == len(ids) else ()


def _within(timings: tuple[PhonemeTiming, ...], first: int, end: int) -> tuple[PhonemeTiming, ...]:
    """The timings overlapping samples [first, end), cut to them and counted from ``first``."""
    return tuple(
        PhonemeTiming(t.phoneme, max(t.start, first) - first, min(t.start + t.length, end) - max(t.start, first))
        for t in timings
        if t.start < end and t.start + t.length > first
    )
