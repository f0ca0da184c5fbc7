"""Speech recognition with Moonshine tiny (English), run by onnxruntime on one thread.

Moonshine's encoder takes raw 16 kHz samples and its cost grows with the
audio's length (no 30 s window to pad to), so a two-second question costs a
fraction of Whisper's.  The int8 encoder/decoder and the tokenizer ship inside
the PyPI package ``moonshine-voice==0.0.73``; we read its files, never import
it (its ``__init__`` needs ``requests`` and a native library we do not use:
that native path measured 1.75x slower here).

Decoding is greedy with the merged decoder's KV cache.  Every call starts from
fresh tensors, so nothing one turn heard can shape the next turn's text.  The
decode length is bounded by the audio's duration, a repeating transcript is
cut and flagged, and the mean log-probability per token is reported so the
caller can refuse a transcript the decoder itself doubts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.cancel import NEVER_CANCELLED, CancelToken
from app.core.engines import ASR_SAMPLE_RATE, Segment, Transcript
from app.engines.asr_trim import normalised
from app.engines.asr_whisper import cut_loop, looks_looped
from app.model_registry import ModelError

ENCODER_FILE = "encoder_model.ort"
DECODER_FILE = "decoder_model_merged.ort"
TOKENIZER_FILE = "tokenizer.bin"
MODEL_FILES = (ENCODER_FILE, DECODER_FILE, TOKENIZER_FILE)
BOS, EOS = 1, 2
LAYERS, HEADS, HEAD_DIM = 6, 8, 36  # moonshine tiny
# Speech runs at 2-4 tokens per second; Moonshine's own reference bounds the decode at 6 per second.
# 8 leaves room for fast talkers; the floor lets a one-word answer finish.
MAX_TOKENS_PER_SECOND = 8
MIN_TOKENS = 6
# The encoder's strided convolutions need ~0.06 s; very short inputs are padded with silence to this.
MIN_AUDIO_S = 0.3
# Below this mean log-probability per token a transcript is flagged as doubted.  On the bench's
# questions and their noisy, fast and accented variants, right transcripts scored -0.01..-0.67;
# "Mm-hmm" heard as "Amen", "Uh-huh" as "But." and hiss as "You" scored -0.77..-0.95 (docs/asr.md).
MIN_LOG_PROB = -0.75
# Moonshine was trained on segments of up to ~30 s and is at its best on short ones: longer audio
# (a monologue piece, up to the listener's 30 s cap) is cut at its quietest moment into pieces.
MAX_PIECE_S = 16.0
MIN_PIECE_S = 8.0


@dataclass(frozen=True)
class Decoded:
    """One greedy decode: the text and why it ended."""

    text: str
    tokens: int
    mean_logprob: float
    hit_limit: bool  # stopped by the length bound, not by the end-of-text token
    looped: bool
    ids: tuple[int, ...] = ()  # the token ids, a draft for the next decode of the same, longer utterance
    accepted: int = 0  # how many of the draft's tokens were kept
    margins: tuple[float, ...] = ()  # per token, how far its logit led the runner-up (small: the model was torn)


class MoonshineTokenizer:
    """``tokenizer.bin``: one length-prefixed byte string per token id (SentencePiece pieces, byte fallback)."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        pieces: list[bytes] = []
        i = 0
        while i < len(data):
            n = data[i]
            pieces.append(data[i + 1 : i + 1 + n])
            i += 1 + n
        if len(pieces) < 3 or pieces[BOS] != b"<s>" or pieces[EOS] != b"</s>":
            raise ValueError(f"{path} is not a Moonshine tokenizer (no <s>/</s> at ids 1 and 2)")
        self._pieces = pieces

    def __len__(self) -> int:
        return len(self._pieces)

    def decode(self, ids: list[int]) -> str:
        raw = b"".join(self._pieces[i] for i in ids if i > EOS and i < len(self._pieces))
        return raw.decode("utf-8", errors="replace").replace("\u2581", " ").strip()


def _session(path: Path, threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # leave the other core to the LLM
    # Every utterance has a new length; the arena would keep the largest one's buffers for good.
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class MoonshineAsr:
    """``transcribe(pcm16k)`` with Moonshine tiny: cost proportional to the audio, no window."""

    name = "moonshine"
    takes_drafts = True  # transcribe(..., draft=): the listener decodes while the user speaks

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        missing = [f for f in MODEL_FILES if not (Path(model_dir) / f).is_file()]
        if missing:
            raise ModelError(
                f"The Moonshine model folder {model_dir} lacks {', '.join(missing)}. Install the model package: "
                "`pip install --no-deps moonshine-voice==0.0.73` (0.1.x no longer carries the weights), "
                "or choose the other engine with --asr whisper."
            )
        try:
            self._encoder = _session(model_dir / ENCODER_FILE, threads)
            self._decoder = _session(model_dir / DECODER_FILE, threads)
            self.tokenizer = MoonshineTokenizer(model_dir / TOKENIZER_FILE)
        except Exception as exc:
            raise ModelError(
                f"The Moonshine model in {model_dir} could not be loaded ({exc}). Reinstall it: "
                "`pip install --no-deps --force-reinstall moonshine-voice==0.0.73`."
            ) from exc
        self._outputs = [o.name for o in self._decoder.get_outputs()]

    def transcribe(
        self, pcm16k: np.ndarray, cancel: CancelToken = NEVER_CANCELLED, draft: Sequence[int] = ()
    ) -> Transcript:
        """``draft``: ``Transcript.draft`` of an earlier decode of this utterance (see ``decode``)."""
        started = time.perf_counter()
        raw = np.asarray(pcm16k, dtype=np.float32).reshape(-1)
        duration = len(raw) / ASR_SAMPLE_RATE
        audio = normalised(raw)  # the same voice gives the same input, wherever the turn's frames fell
        segments: list[Segment] = []
        weighted, tokens, doubtful = 0.0, 0, False
        spans = pieces(audio)
        ids: tuple[int, ...] = ()
        for start, end in spans:
            decoded = self.decode(audio[start:end], cancel, draft if len(spans) == 1 else ())
            ids = decoded.ids if len(spans) == 1 else ()
            if decoded.text:
                segments.append(Segment(start / ASR_SAMPLE_RATE, end / ASR_SAMPLE_RATE, decoded.text))
            weighted += decoded.mean_logprob * max(decoded.tokens, 1)
            tokens += max(decoded.tokens, 1)
            doubtful = doubtful or decoded.looped or decoded.hit_limit
        logprob = weighted / tokens if tokens else 0.0
        return Transcript(
            text=" ".join(s.text for s in segments),
            segments=tuple(segments),
            audio_s=duration,
            compute_ms=(time.perf_counter() - started) * 1000,
            mean_logprob=logprob,
            doubtful=doubtful or logprob < MIN_LOG_PROB,
            engine=self.name,
            draft=ids,
        )

    def decode(self, audio: np.ndarray, cancel: CancelToken = NEVER_CANCELLED, draft: Sequence[int] = ()) -> Decoded:
        """Greedy decode with a fresh KV cache, at most ``MAX_TOKENS_PER_SECOND`` tokens per second of audio.

        ``draft``: token ids from a decode of the same utterance while it was shorter.  They are
        checked in one decoder pass, and the leading ones the model would have chosen itself are
        kept, so the result is the plain greedy decode's, only with fewer sequential steps.
        """
        cancel.raise_if_cancelled()
        duration = len(audio) / ASR_SAMPLE_RATE
        if duration < 0.1 or not np.any(np.abs(audio) > 1e-4):
            return Decoded("", 0, 0.0, False, False)
        if duration < MIN_AUDIO_S:
            audio = np.concatenate([audio, np.zeros(int(MIN_AUDIO_S * ASR_SAMPLE_RATE) - len(audio), np.float32)])
        x = audio[None, :]
        hidden = self._encoder.run(None, {"input_values": x, "attention_mask": np.ones(x.shape, np.int64)})[0]
        limit = max(MIN_TOKENS, math.ceil(MAX_TOKENS_PER_SECOND * duration))
        draft = [t for t in draft if t > EOS][:limit]
        empty = np.zeros((1, HEADS, 0, HEAD_DIM), np.float32)
        feeds: dict[str, np.ndarray] = {
            "encoder_hidden_states": hidden,
            "encoder_attention_mask": np.ones(hidden.shape[:2], np.int64),
            "input_ids": np.array([[BOS, *draft]], np.int64),
            "use_cache_branch": np.array([False]),
        }
        for layer in range(LAYERS):
            for part in ("decoder", "encoder"):
                for kv in ("key", "value"):
                    feeds[f"past_key_values.{layer}.{part}.{kv}"] = empty
        out = self._decoder.run(None, feeds)  # BOS and the whole draft in one pass
        ids: list[int] = []
        margins: list[float] = []
        logprob_sum = 0.0
        for position in range(len(draft) + 1):
            token, logprob, margin = _pick(out[0][0, position])
            if position == len(draft) or token != draft[position]:
                break  # the model's own choice after the agreed prefix
            ids.append(token)
            margins.append(margin)
            logprob_sum += logprob
        accepted = len(ids)
        self._keep_cache(feeds, out, 1 + accepted, first=True)
        ended = False
        while True:
            if token == EOS:
                logprob_sum += logprob
                ended = True
                break
            if len(ids) >= limit:
                break
            ids.append(token)
            margins.append(margin)
            logprob_sum += logprob
            cancel.raise_if_cancelled()
            feeds["input_ids"] = np.array([[token]], np.int64)
            feeds["use_cache_branch"] = np.array([True])
            out = self._decoder.run(None, feeds)
            token, logprob, margin = _pick(out[0][0, -1])
            self._keep_cache(feeds, out, None, first=False)
        text = self.tokenizer.decode(ids)
        looped = looks_looped(text)
        return Decoded(
            text=cut_loop(text) if looped else text,
            tokens=len(ids),
            mean_logprob=logprob_sum / (len(ids) + int(ended)) if ids or ended else 0.0,
            hit_limit=not ended,
            looped=looped,
            ids=tuple(ids),
            accepted=accepted,
            margins=tuple(margins),
        )

    def _keep_cache(self, feeds: dict[str, np.ndarray], out: list, keep: int | None, first: bool) -> None:
        """The step's KV cache becomes the next step's input; ``keep`` cuts rejected draft positions off."""
        for name, value in zip(self._outputs[1:], out[1:], strict=True):
            if ".encoder." in name:
                if first:  # the cross-attention cache is computed once, at the first step
                    feeds[name.replace("present", "past_key_values", 1)] = value
                continue
            feeds[name.replace("present", "past_key_values", 1)] = value if keep is None else value[:, :, :keep, :]


def _pick(logits: np.ndarray) -> tuple[int, float, float]:
    """The greedy token, its log-probability, and its logit's lead over the runner-up."""
    logits = logits.astype(np.float64)
    token = int(logits.argmax())
    second = float(np.partition(logits, -2)[-2])
    return token, -math.log(float(np.exp(logits - logits[token]).sum())), float(logits[token]) - second


def pieces(audio: np.ndarray) -> list[tuple[int, int]]:
    """Sample ranges of at most ``MAX_PIECE_S``, each cut at the quietest 50 ms after ``MIN_PIECE_S``."""
    rate, hop = ASR_SAMPLE_RATE, ASR_SAMPLE_RATE // 20
    out: list[tuple[int, int]] = []
    start = 0
    while len(audio) - start > MAX_PIECE_S * rate:
        lo, hi = start + int(MIN_PIECE_S * rate), start + int(MAX_PIECE_S * rate)
        frames = audio[lo:hi][: (hi - lo) // hop * hop].reshape(-1, hop)
        cut = lo + int(np.argmin(np.mean(frames**2, axis=1))) * hop + hop // 2
        out.append((start, cut))
        start = cut
    out.append((start, len(audio)))
    return out
