"""Smart Turn v3.2: an audio model of whether the user sounds finished.

Pipecat's end-of-turn classifier (BSD-2-Clause, shipped in the pipecat-ai
wheel; we read its .onnx, never import pipecat). It hears the last 8 s of the
utterance as Whisper's 80-bin log-mel features (the waveform normalised to
zero mean and unit variance first, silence padded in front) and returns
P(complete). One onnxruntime thread: it runs on the ASR worker between the
transcript and the commit, while the LLM has the other core.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.core.engines import ASR_SAMPLE_RATE
from app.model_registry import ModelError

WINDOW_S = 8
_FRAMES = WINDOW_S * ASR_SAMPLE_RATE // 160  # 800 feature frames of 10 ms


class SmartTurn:
    """``TurnEndModel`` on Smart Turn v3.2 (one thread, spinning off)."""

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelError(
                f"The end-of-turn model {model_path} could not be loaded ({exc}). Reinstall it: "
                '`pip install --no-deps pipecat-ai==1.14.0 --force-reinstall`, or drop "audio" from [turns] cues.'
            ) from exc
        self._input = self._session.get_inputs()[0].name
        self._features = FeatureExtractor(
            feature_size=80, sampling_rate=ASR_SAMPLE_RATE, hop_length=160, chunk_length=WINDOW_S, n_fft=400
        )

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(80, 800) log-mel features of the last 8 s, zero-padded in front."""
        n = WINDOW_S * ASR_SAMPLE_RATE
        x = np.asarray(audio, dtype=np.float32).reshape(-1)[-n:]
        x = np.pad(x, (n - len(x), 0))
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        return self._features(x, padding=0)[:, :_FRAMES].astype(np.float32)

    def complete_probability(self, audio: np.ndarray) -> float:
        (out,) = self._session.run(None, {self._input: self.features(audio)[None]})
        return float(np.asarray(out).reshape(-1)[0])
