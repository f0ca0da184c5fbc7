"""Per-turn latency metrics, computed passively from the event stream.

Stages only publish events; this observer turns them into the numbers the HUD,
the log and the benchmark show.  The seed's figure of merit is
``20 / TPS + TTFT``: the time until 20 tokens exist, enough for TTS to start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from app.core import events as ev
from app.core.clock import TurnClock

TOKENS_BEFORE_TTS = 20

# Metric names, in the order a turn reaches them (the HUD and bench use this order).
METRIC_NAMES = (
    "vad_end_of_turn_ms",
    "asr_ms",
    "asr_final_ms",
    "ttft_ms",
    "tps",
    "llm_latency_ms",
    "first_chunk_to_tts_ms",
    "tts_first_audio_ms",
    "speech_end_to_first_audio_ms",
    "speech_end_to_first_frame_ms",
    "llm_total_ms",
    "n_tokens",
    "llm_yield_ms",
    "llm_tts_wait_ms",
    "llm_face_wait_ms",
    "twentieth_token_ms",
    "barge_in_ms",
)


def llm_latency_ms(ttft_ms: float | None, tps: float | None) -> float | None:
    """The seed's Total LLM latency: 20/TPS + TTFT, in milliseconds."""
    if ttft_ms is None or not tps:
        return None
    return TOKENS_BEFORE_TTS / tps * 1000.0 + ttft_ms


def _total(values: Iterable[float]) -> float | None:
    """The sum, or None when there is nothing to add (the metric did not happen)."""
    listed = list(values)
    return sum(listed) if listed else None


class _TurnRecord:
    def __init__(self, start_ns: int) -> None:
        self.clock = TurnClock(start_ns)
        self.n_tokens = 0
        self.first_token_ns: int | None = None
        self.last_token_ns: int | None = None
        # Every pause for TTS or the face: (when it ended, its length in ms, "first", "tts" or "face").
        self.pauses: list[tuple[int, float, str]] = []
        self.asr_ms: float | None = None
        self.server_tps: float | None = None
        self.finished = False


class MetricsObserver:
    """Feeds on events; ``compute(turn_id)`` gives the current numbers for that turn.

    ``on_update`` (optional) receives a ``TurnMetrics`` event whenever a turn's
    numbers change, so the HUD can update live; the final one has ``final`` set
    in its values (``values["final"] == 1.0``).
    """

    def __init__(self, on_update: Callable[[ev.TurnMetrics], None] | None = None) -> None:
        self._turns: dict[int, _TurnRecord] = {}
        self._lock = threading.Lock()
        self._on_update = on_update

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.TurnMetrics):
            return
        with self._lock:
            changed = self._record(event)
            values = self._compute_locked(event.turn_id) if changed else None
        if values is not None and self._on_update is not None:
            self._on_update(ev.TurnMetrics(event.turn_id, values=values))

    def _record(self, event: ev.Event) -> bool:
        rec = self._turns.get(event.turn_id)
        if rec is None:
            rec = self._turns[event.turn_id] = _TurnRecord(event.t_ns)
        mark = rec.clock.mark
        match event:
            case ev.SpeechEnded(voice_end_ns=voice_end):
                mark("voice_end", voice_end)
                mark("vad_decided", event.t_ns)
            case ev.UserText():
                mark("voice_end", event.t_ns)
            case ev.TranscriptFinal(asr_ms=asr_ms):
                rec.asr_ms = asr_ms
                mark("asr_final", event.t_ns)
            case ev.LlmRequest():
                mark("llm_request", event.t_ns)
            case ev.LlmToken():
                rec.n_tokens += 1
                if rec.first_token_ns is None:
                    rec.first_token_ns = event.t_ns
                    mark("first_token", event.t_ns)
                rec.last_token_ns = event.t_ns
                if rec.n_tokens == 20:  # the seed's "tokens needed before TTS can start", measured
                    mark("twentieth_token", event.t_ns)
                return rec.n_tokens in (1, 2, 5) or rec.n_tokens % 10 == 0
            case ev.LlmYielded(paused_ms=paused_ms, for_first_clause=first, for_face=face):
                rec.pauses.append((event.t_ns, paused_ms, "first" if first else "face" if face else "tts"))
            case ev.LlmDone(server_tps=server_tps):
                rec.server_tps = server_tps
                mark("llm_done", event.t_ns)
            case ev.TtsChunkQueued():
                mark("first_chunk_to_tts", event.t_ns)
            case ev.TtsAudio():
                mark("tts_first_audio", event.t_ns)
            case ev.AudioPlayed():
                mark("first_audio_played", event.t_ns)
            case ev.ReplicaFrame():
                mark("first_replica_frame", event.t_ns)
            case ev.BargeIn(onset_ns=onset, silent_ns=silent):
                mark("barge_in_onset", onset)
                mark("barge_in_silent", silent)
            case ev.TurnEnded():
                rec.finished = True
            case _:
                return False
        return True

    def compute(self, turn_id: int) -> dict[str, float | None]:
        with self._lock:
            return self._compute_locked(turn_id)

    def _compute_locked(self, turn_id: int) -> dict[str, float | None]:
        rec = self._turns.get(turn_id)
        if rec is None:
            return {name: None for name in METRIC_NAMES}
        c = rec.clock
        ttft = c.ms_between("llm_request", "first_token")
        tps = self._tps(rec)
        values: dict[str, float | None] = {
            "vad_end_of_turn_ms": c.ms_between("voice_end", "vad_decided"),
            "asr_ms": rec.asr_ms,
            "asr_final_ms": c.ms_between("voice_end", "asr_final"),
            "ttft_ms": ttft,
            "tps": tps,
            "llm_latency_ms": llm_latency_ms(ttft, tps),
            "first_chunk_to_tts_ms": c.ms_between("llm_request", "first_chunk_to_tts"),
            "tts_first_audio_ms": c.ms_between("first_chunk_to_tts", "tts_first_audio"),
            "speech_end_to_first_audio_ms": c.ms_between("voice_end", "first_audio_played"),
            "speech_end_to_first_frame_ms": c.ms_between("voice_end", "first_replica_frame"),
            "llm_total_ms": c.ms_between("llm_request", "llm_done"),
            "n_tokens": float(rec.n_tokens),
            "llm_yield_ms": next((ms for _, ms, why in reversed(rec.pauses) if why == "first"), None),
            "llm_tts_wait_ms": _total(ms for _, ms, why in rec.pauses if why == "tts"),
            "llm_face_wait_ms": _total(ms for _, ms, why in rec.pauses if why == "face"),
            "twentieth_token_ms": c.ms_between("llm_request", "twentieth_token"),
            "barge_in_ms": c.ms_between("barge_in_onset", "barge_in_silent"),
            "final": 1.0 if rec.finished else 0.0,
        }
        return values

    @staticmethod
    def _tps(rec: _TurnRecord) -> float | None:
        """Tokens after the first divided by the time after the first, less the pauses (for TTS or the face) in it."""
        if rec.server_tps:
            return rec.server_tps
        if rec.n_tokens < 2 or rec.first_token_ns is None or rec.last_token_ns is None:
            return None
        span_s = (rec.last_token_ns - rec.first_token_ns) / 1e9
        span_s -= sum(ms for end, ms, _ in rec.pauses if rec.first_token_ns < end <= rec.last_token_ns) / 1000.0
        return (rec.n_tokens - 1) / span_s if span_s > 0 else None

    def forget(self, turn_id: int) -> None:
        with self._lock:
            self._turns.pop(turn_id, None)
