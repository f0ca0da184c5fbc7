"""The conversation pipeline: audio in -> VAD -> ASR -> LLM -> TTS -> speaker and face.

Each stage runs on its own worker thread, talks through bounded queues and
publishes typed events on the bus.  This class wires them and keeps the turn
bookkeeping; the numbers are the metrics observer's job.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

from app.config import Config
from app.core import events as ev
from app.core.audio import resample
from app.core.audio_io import AudioSink, AudioSource
from app.core.bus import EventBus
from app.core.cancel import CancelToken
from app.core.chunker import Chunker, speakable
from app.core.cpu_plan import CpuPlan, Phase, plan_settings
from app.core.duplex import BargeInGate, MicFilter
from app.core.history import History, JsonlLog
from app.core.jobs import EngineSet, Face, LlmJob, Speculation, TtsJob
from app.core.listener import Listener
from app.core.listening import ListeningSide
from app.core.memory import release_free_memory
from app.core.metrics import MetricsObserver
from app.core.replica_stage import FrameCallback, ReplicaStage
from app.core.speaking import SpeakingSide
from app.core.turn import Turn, heard_for_history
from app.core.turn_model import TurnModel
from app.core.turn_taking import TurnTakingSide, turn_model_for
from app.core.vad import TurnDetectorSettings
from app.core.workers import Worker

log = logging.getLogger(__name__)
FIRST_AUDIO_YIELD_S = 1.0
EARLY_VOICE_MS = 64  # voice this long while the replica talks mutes it; the onset (160 ms) then stops the reply
EARLY_VOICE_P = 0.25  # ...counted at this lower bar: an unvoiced "s" ("Stop.") scores 0.25-0.45


class Conversation(ListeningSide, TurnTakingSide, SpeakingSide):
    """Owns the stage workers; ``say`` for typed input, an ``AudioSource`` for speech."""

    def __init__(
        self,
        config: Config,
        engines: EngineSet,
        *,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        face: Face | None = None,
        bus: EventBus | None = None,
        log: JsonlLog | None = None,
        speculate: bool = True,
        on_frame: FrameCallback | None = None,
        mic_filter: MicFilter | None = None,
        barge_in_gate: BargeInGate | None = None,
        half_duplex: bool = False,
        cpu_plan: CpuPlan | None = None,
        turn_model: TurnModel | None = None,
        face_stage: ReplicaStage | None = None,
    ) -> None:
        self.config = config
        self.turn_model = turn_model or turn_model_for(config, getattr(engines, "turn_end", None))
        self.engines = engines
        self.source, self.sink, self.face = source, sink, face
        self.bus = bus or EventBus()
        self.metrics = MetricsObserver(on_update=self.bus.publish)
        self.bus.subscribe(self.metrics)
        self.log = log or JsonlLog.in_dir(config.log_dir)
        self.speculate = speculate
        self.mic_filter, self.barge_in_gate, self.half_duplex = mic_filter, barge_in_gate, half_duplex
        self.rejected_onsets = 0  # speech onsets the gate judged not to be the user
        self.false_ducks = 0  # times the replica was muted for voice that never became an onset
        self.audio_gaps = 0  # sentences that started after the one before had finished playing
        self._ducked_ns: int | None = None  # when the replica's speech was muted for early voice
        budget = max(256, engines.llm.context_tokens - config.max_reply_tokens - 64)
        self.history = History(config.system_prompt, budget, engines.llm.count_tokens, config.history_tokens)
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._active: Turn | None = None
        self._listening_turn: int | None = None  # turn id of the utterance in progress
        self._carried = ""  # words of a turn the next utterance overtook, for the next prompt
        self._speculation: Speculation | None = None
        self._user_speaking = False
        self._idle = threading.Condition(self._lock)
        self.speculations = {"started": 0, "reused": 0, "discarded": 0, "discarded_replies": 0}
        self.cpu = cpu_plan or CpuPlan(plan_settings(config))
        self._vad = self._worker("vad", self._on_frame, 256)
        self._asr = self._worker("asr", self._on_asr_job, 8)
        self._llm = self._worker("llm", self._on_llm_job, 8)
        self._tts = self._worker("tts", self._on_tts_job, 64)
        self._workers = [self._vad, self._asr, self._llm, self._tts]
        set_llm_threads = getattr(engines.llm, "set_threads", None)
        if set_llm_threads is not None:
            self.cpu.on_change(lambda budget: set_llm_threads(budget.llm_threads))
        # While the LLM pauses for a synthesis, its thread team sleeps rather than polling beside Piper.
        self._llm_rest: Callable[[], None] = getattr(engines.llm, "rest", None) or (lambda: None)
        self.replica_stage: ReplicaStage | None = None
        if face is not None and on_frame is not None:
            self.replica_stage = ReplicaStage(face, on_frame, self.on_replica_frame)  # type: ignore[arg-type]
            self.replica_stage.follow(self.cpu)
        # Woken as speech is queued (the first speaking frame on its first sample, not an idle tick); the window
        # runs the face's stage itself (``face_stage``).
        self.speech_stage = self.replica_stage or face_stage
        self._listener: Listener | None = None
        self._warmup = CancelToken()
        if source is not None:
            settings = TurnDetectorSettings(
                silence_ms=config.silence_ms,
                min_speech_ms=config.min_speech_ms,
                early_speech_ms=EARLY_VOICE_MS,
                early_threshold=EARLY_VOICE_P,
            )
            ends = (self._on_onset, self._on_pause, self._on_resume, self._on_end)
            self._listener = Listener(settings, *ends, on_early_onset=self._on_early_onset, on_blip=self._on_blip)

    def _worker(self, name: str, handle, maxsize: int) -> Worker:
        return Worker(name, handle, maxsize=maxsize, on_start=lambda: self.cpu.adopt_thread(name))

    @classmethod
    def for_text(cls, config: Config, engines: EngineSet, speak: bool = True) -> Conversation:
        """A conversation with no microphone; replies go to the speaker when there is one."""
        sink = None
        if speak:
            from app.devices.sound import open_speaker

            sink = open_speaker(engines.tts.sample_rate)
        return cls(config, engines, sink=sink)

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        if self.sink is not None:
            self.sink.start(self)
        if self.replica_stage is not None:
            self.replica_stage.start()
        # Evaluate the persona prompt now, so the first turn finds it in the KV cache.
        self._warmup = CancelToken()
        self._llm.submit(LlmJob(None, "", prefill_only=self._warmup))
        if self.source is not None:
            self.source.start(lambda frame, t: self._vad.submit((frame, t)))
        self._set_state(ev.AgentState.LISTENING if self.source else ev.AgentState.IDLE)

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Stop everything; True if every thread ended within ``timeout``."""
        self._warmup.cancel("shutdown")
        self._drop_speculation("shutdown")
        with self._lock:
            if self._active is not None:
                self._active.cancel.cancel("shutdown")
        if self.source is not None:
            self.source.stop()
        ok = all(worker.stop(timeout) for worker in self._workers)
        if self.replica_stage is not None:
            ok = self.replica_stage.stop(timeout) and ok
        if self.sink is not None:
            self.sink.stop()
        return ok

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._active is None and not self._user_speaking

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._active is None and not self._user_speaking, timeout)

    def settle(self, timeout: float = 10.0) -> bool:
        """Idle, and the LLM's after-turn work (history prefill, heap trim) done: a quiet moment to measure."""
        deadline = time.monotonic() + timeout
        return self.wait_idle(timeout) and self._llm.flush(max(0.0, deadline - time.monotonic()))

    # -- commands -----------------------------------------------------------------

    def say(self, text: str) -> int:
        """A typed message, handled like a finished spoken turn."""
        turn = Turn(next(self._ids), user_text=text.strip())
        self._drop_speculation("typed message")
        self.interrupt("new message")
        self.bus.publish(ev.UserText(turn.id, turn.user_text))
        self.cpu.enter(Phase.THINKING, turn.id)
        self._begin_reply(turn)
        return turn.id

    def interrupt(self, reason: str = "stop", onset_ns: int | None = None, silent_ns: int | None = None) -> None:
        """Stop the reply in progress (Esc, barge-in, new message); keep what was heard.

        ``silent_ns``: the reply already fell silent then (paused for the user's voice).
        """
        with self._lock:
            turn = self._active
            if turn is None or turn.cancel.cancelled:
                return
            turn.cancel.cancel(reason)
            turn.interrupted = True
            turn.first_audio_ready.set()
        cleared_ns = self.sink.clear() if self.sink is not None else ev.now_ns()
        silent_ns = cleared_ns if silent_ns is None else min(silent_ns, cleared_ns)
        with self._lock:
            if self._ducked_ns is not None:  # muted for early voice already: that is when it fell silent
                silent_ns = min(silent_ns, self._ducked_ns)
            if turn.paused and self.sink is not None:
                turn.paused = False
                self.cpu.wake()
                self.sink.hold(False)  # the queue is empty now: the next reply plays at once
            if self._paused is not None and self._paused.turn is turn:
                self._paused = None
        if self.face is not None:
            self.face.clear_buffer()
        if onset_ns is not None:
            self.bus.publish(ev.BargeIn(turn.id, onset_ns=onset_ns, silent_ns=silent_ns))
        self._finish(turn)

    def set_system_prompt(self, prompt: str) -> None:
        self.history.set_system_prompt(prompt)

    # -- LLM worker ------------------------------------------------------------------

    def _emit(self, turn: Turn, event: ev.Event) -> None:
        """Publish a turn's event, or queue it while the turn is speculative."""
        turn.outbox.run(lambda: self.bus.publish(event))

    def _begin_reply(self, turn: Turn) -> None:
        if not turn.outbox.held:
            with self._lock:
                self._active = turn
        turn.outbox.run(lambda: self._set_state(ev.AgentState.THINKING))
        # TTFT counts from here: waiting behind other LLM work is part of it.
        self._emit(turn, ev.LlmRequest(turn.id, backend=getattr(self.engines.llm, "name", "local")))
        self._llm.submit_urgent(LlmJob(turn, turn.user_text))  # ahead of prefills, never dropped by a full queue

    def _end_of_turn_probability(self, messages: list) -> float | None:
        """The LLM's P(end of turn) for the turn model; None if the engine cannot say (or fails to)."""
        cue = getattr(self.engines.llm, "end_of_turn_probability", None)
        try:
            return cue(messages) if cue is not None else None
        except Exception:  # the reply's own call reports a broken engine; the turn must not wait on this
            log.exception("end-of-turn probability failed")
            return None

    def _on_llm_job(self, job: LlmJob) -> None:
        llm = self.engines.llm
        if job.prefill_only is not None:
            with self._lock:
                self._prefill_queued = False
            prefill = getattr(llm, "prefill", None)
            if prefill is not None and not job.prefill_only.cancelled:
                messages = self.history.messages_for(job.user_text) if job.user_text else self.history.snapshot()
                prefill(messages, job.prefill_only)
            if job.user_text == "":  # the post-turn prefill: the user is thinking, the heap is quiet
                release_free_memory()
            return
        turn = job.turn
        assert turn is not None
        if turn.cancel.cancelled:
            return
        turn.cancel.on_cancel(self.cpu.wake)  # the turn's waits for the plan (its LLM's, its TTS's) end at once
        messages = self.history.messages_for(turn.user_text)
        if turn.end_cue is not None:
            turn.end_cue(self._end_of_turn_probability(messages))
        if turn.fixed_reply:
            self._say_fixed(turn)
            return
        chunker = Chunker()
        pieces = turn.llm_pieces
        self.cpu.llm_started()
        try:
            for token in llm.stream_chat(messages, turn.cancel):
                pieces.append(token.text)
                self._emit(turn, ev.LlmToken(turn.id, token.text, token.index))
                chunk = chunker.push(token.text)
                if chunk:
                    self._queue_tts(turn, chunk)
                    if len(turn.texts) == 1 and self.config.yield_to_first_audio:
                        # Two cores: let Piper have them for the first clause. The rest of the
                        # reply is only needed before that clause finishes playing.
                        paused = time.perf_counter()
                        self._llm_rest()
                        with self.cpu.llm_rests():
                            turn.first_audio_ready.wait(FIRST_AUDIO_YIELD_S)
                        paused_ms = (time.perf_counter() - paused) * 1000
                        self._emit(turn, ev.LlmYielded(turn.id, paused_ms=paused_ms))
                # A sentence being synthesized has the cores (the plan): the rest of the reply can wait.
                waited_ms = self.cpu.wait_while_tts(lambda: turn.cancel.cancelled, before_wait=self._llm_rest)
                if waited_ms:
                    self._emit(turn, ev.LlmYielded(turn.id, paused_ms=waited_ms, for_first_clause=False))
                # A speaking face renders its next frames in one burst while the LLM rests (the plan).
                if face_ms := self.cpu.yield_to_face(lambda: turn.cancel.cancelled, before_wait=self._llm_rest):
                    self._emit(turn, ev.LlmYielded(turn.id, paused_ms=face_ms, for_first_clause=False, for_face=True))
                if turn.cancel.cancelled:
                    break
        except Exception as exc:  # a backend failure ends the turn cleanly, with a message
            turn.error = str(exc)
            self._emit(turn, ev.ErrorEvent(turn.id, source="llm", message=str(exc)))
        finally:
            self.cpu.llm_finished()
        stats = llm.last_stats
        self._emit(turn, ev.LlmDone(turn.id, turn.llm_text, len(pieces), server_tps=stats.server_tps))
        tail = chunker.flush()
        if tail and not turn.cancel.cancelled:
            self._queue_tts(turn, tail)
        self._tts.submit(TtsJob(turn, -1))

    def _say_fixed(self, turn: Turn) -> None:
        """A line that needs no LLM (asking again): straight to TTS; no token events, so no TTFT or TPS."""
        turn.llm_pieces.append(turn.fixed_reply)
        self._emit(turn, ev.LlmDone(turn.id, turn.llm_text, 0))
        self._queue_tts(turn, turn.fixed_reply)
        self._tts.submit(TtsJob(turn, -1))

    def _queue_tts(self, turn: Turn, text: str) -> None:
        spoken = speakable(text)
        if not spoken:
            return
        index = len(turn.texts)
        turn.texts.append(text)
        self._emit(turn, ev.TtsChunkQueued(turn.id, spoken, index))
        self._tts.submit(TtsJob(turn, index, spoken))

    # -- TTS worker -------------------------------------------------------------------

    def _on_tts_job(self, job: TtsJob) -> None:
        turn = job.turn
        if job.index < 0:
            turn.outbox.run(lambda: self._tts_finished(turn))
            return
        if job.index > 0:  # later sentences wait for the LLM, unless the queued audio runs low
            self.cpu.wait_for_tts_turn(
                lambda: self._unplayed_s(turn), lambda: turn.cancel.cancelled, held=lambda: turn.paused
            )
        self.cpu.tts_started()  # once the LLM's token is done it waits (or decodes on fewer threads: the plan says)
        try:
            for chunk in self.engines.tts.synthesize(job.text, turn.cancel):
                if turn.cancel.cancelled:
                    return
                self._emit(turn, ev.TtsAudio(turn.id, job.index, len(chunk.audio), chunk.sample_rate))
                turn.synthesized_s += chunk.duration_s
                if not turn.first_audio_ready.is_set():
                    turn.outbox.run(lambda: self.cpu.enter(Phase.SPEAKING, turn.id))
                turn.first_audio_ready.set()
                if self.sink is not None:
                    audio = resample(chunk.audio, chunk.sample_rate, self.sink.sample_rate)
                    turn.outbox.run(lambda a=audio, c=chunk: self._play(turn, job.index, a, c))
        finally:
            self.cpu.tts_finished()

    def _tts_finished(self, turn: Turn) -> None:
        turn.tts_done = True
        if not turn.segments or self.sink is None:
            self._finish(turn)
        else:
            self._maybe_finish_after_playout(turn)

    # -- turn end -------------------------------------------------------------------------

    def _finish(self, turn: Turn) -> None:
        with self._lock:
            if turn.finished.is_set():
                return
            turn.finished.set()
            if self._active is turn:
                self._active = None
        if self.sink is not None or turn.interrupted:
            heard = turn.played_text(self._played_samples(turn))
        else:
            heard = turn.llm_text
        if turn.interrupted:
            self.bus.publish(ev.TurnInterrupted(turn.id, played_text=heard))
        told = heard_for_history(heard)
        if told:  # nothing said, or only a fragment: the model does not see this exchange
            self.history.record(turn.user_text, told)
        # Evaluate the history as it stands while the user thinks, so the next reply only evaluates their
        # new words. Not when they already speak (a barge-in): it would undo their drafts' prefill.
        if self._listening_turn is None and self._speculation is None:
            self._warmup = CancelToken()
            self._llm.submit(LlmJob(None, "", prefill_only=self._warmup))
        self.bus.publish(ev.ReplyText(turn.id, heard))
        self.bus.publish(ev.TurnEnded(turn.id, interrupted=turn.interrupted))
        stats = self.engines.llm.last_stats
        self.log.write(turn.log_record(heard, stats.backend, stats.error, self.metrics.compute(turn.id)))
        with self._lock:
            self._idle.notify_all()
            busy = self._active is not None
        if not busy:
            self.cpu.enter(Phase.LISTENING, turn.id)
        self._set_state(ev.AgentState.LISTENING if self.source else ev.AgentState.IDLE)

    def _set_state(self, state: ev.AgentState) -> None:
        self.bus.publish(ev.StateChanged(0, state))
