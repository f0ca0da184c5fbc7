"""The user's side of turn-taking: VAD callbacks, speculative replies, the hand-over.

Split from ``Conversation`` (which mixes this in) to keep each file readable:
this half decides *when* the user has finished and starts the reply early;
the other half makes and plays the reply.  The attributes and methods listed
on the class are the host's, used here.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

import numpy as np

from app.config import Config
from app.core import events as ev
from app.core.audio_io import AudioSink
from app.core.bus import EventBus
from app.core.cancel import Cancelled, CancelToken
from app.core.cpu_plan import CpuPlan, Phase
from app.core.duplex import BargeInGate, MicFilter
from app.core.engines import ASR_SAMPLE_RATE, Transcript
from app.core.fillers import Verdict, judge
from app.core.history import History
from app.core.jobs import AsrJob, EngineSet, LlmJob, Speculation
from app.core.listener import Listener, Utterance
from app.core.outbox import Outbox
from app.core.turn import Turn
from app.core.workers import Worker

log = logging.getLogger(__name__)
BACKCHANNEL = "a backchannel while the replica spoke: it went on"
# While the user speaks, an engine that takes drafts (Moonshine) re-decodes the growing utterance
# every PARTIAL_STEP_S; at the pause its final decode starts from the agreed words.
PARTIAL_STEP_S = 0.4
PARTIAL_MIN_S = 0.6


class ListeningSide:
    """Mixed into ``Conversation``; runs on the VAD and ASR worker threads."""

    engines: EngineSet
    bus: EventBus
    speculate: bool
    mic_filter: MicFilter | None
    barge_in_gate: BargeInGate | None
    half_duplex: bool
    rejected_onsets: int
    false_ducks: int
    sink: AudioSink | None
    _ducked_ns: int | None
    speculations: dict[str, int]
    _lock: threading.RLock
    _idle: threading.Condition
    _ids: itertools.count
    _active: Turn | None
    _listening_turn: int | None
    _carried: str
    _speculation: Speculation | None
    _user_speaking: bool
    _listener: Listener | None
    _asr: Worker
    _llm: Worker
    config: Config
    history: History
    cpu: CpuPlan
    interrupt: Callable[..., None]
    _begin_reply: Callable[[Turn], None]
    _set_state: Callable[[ev.AgentState], None]
    _finish: Callable[[Turn], None]
    # Drafts while the user speaks (class defaults: the host need not know about them).
    _draft: tuple[int, ...] = ()
    _draft_turn: int | None = None
    _draft_samples: int = 0
    _partial: CancelToken | None = None
    asr_partials: int = 0  # partial decodes finished, for tests and the curious
    user_word_prefills: int = 0  # times the user's words so far went into the LLM's KV cache
    _prefill_queued: bool = False  # a prefill of the user's words waits for the LLM worker

    def _on_frame(self, job: tuple[np.ndarray, int]) -> None:
        if self._listener is None:
            return
        frame, t_ns = job
        if self.mic_filter is not None:
            frame = self.mic_filter.process(frame, t_ns)
        if self.half_duplex and self.replica_audible:
            frame = np.zeros_like(frame)  # ducked: no canceller, so do not listen to ourselves
        self._listener.push(frame, t_ns)
        self._check_held(t_ns)
        self._maybe_partial()

    def _maybe_partial(self) -> None:
        """Every PARTIAL_STEP_S of voice, queue a decode of the utterance so far (one at a time)."""
        drafts = getattr(self.engines.asr, "takes_drafts", False)
        if self._listener is None or not (drafts or self.config.prefill_while_speaking):
            return
        with self._lock:
            turn_id, busy = self._listening_turn, self._partial is not None or self._speculation is not None
            grown = self._draft_samples if self._draft_turn == turn_id else 0
        if turn_id is None or busy:
            return
        audio = self._listener.audio_so_far()
        rate = ASR_SAMPLE_RATE
        if audio is None or len(audio) < PARTIAL_MIN_S * rate or len(audio) - grown < PARTIAL_STEP_S * rate:
            return
        cancel = CancelToken()
        with self._lock:
            self._partial = cancel
            if self._draft_turn != turn_id:
                self._draft, self._draft_turn = (), turn_id
            self._draft_samples = len(audio)
        self._asr.submit(AsrJob(turn_id, Utterance(audio, 0, 0), partial=cancel))

    def _run_partial(self, job: AsrJob) -> None:
        assert self.engines.asr is not None and job.partial is not None
        try:
            if not job.partial.cancelled:
                transcript = self._transcribe(job.turn_id, job.utterance.audio, job.partial)
                with self._lock:
                    current = self._draft_turn == job.turn_id
                    if current:
                        self._draft = transcript.draft
                        self.asr_partials += 1
                if current and not job.partial.cancelled:
                    self._prefill_user_words(transcript.text)
        except Cancelled:
            pass  # the user paused: the final decode goes first
        finally:
            with self._lock:
                if self._partial is job.partial:
                    self._partial = None

    def _prefill_user_words(self, text: str) -> None:
        """Put the words heard so far into the LLM's KV cache, so at the pause only the rest is evaluated.

        The last word is left out (it may still change); the reply's prompt then finds
        the history and these words cached, and its TTFT covers a few tokens, not the question.
        """
        words = text.split()[:-1]
        if not self.config.prefill_while_speaking or len(words) < 2:
            return
        with self._lock:
            if self._prefill_queued:  # one waiting is enough: a busy LLM must not pile up stale prefills
                return
            self._prefill_queued = True
        self.user_word_prefills += 1
        self._llm.submit(LlmJob(None, self._with_carried(" ".join(words)), prefill_only=CancelToken()))

    def _transcribe(self, turn_id: int, audio: np.ndarray, cancel: CancelToken | None = None) -> Transcript:
        """The engine's transcript, seeded with this turn's draft when the engine takes one."""
        assert self.engines.asr is not None
        args = (audio,) if cancel is None else (audio, cancel)
        if not getattr(self.engines.asr, "takes_drafts", False):
            return self.engines.asr.transcribe(*args)
        with self._lock:
            draft = self._draft if self._draft_turn == turn_id else ()
        return self.engines.asr.transcribe(*args, draft=draft)  # type: ignore[call-arg]

    @property
    def replica_audible(self) -> bool:
        with self._lock:
            turn = self._active
            return turn is not None and turn.first_audio_played and not turn.finished.is_set() and not turn.paused

    def _on_early_onset(self, t_ns: int) -> None:
        """64 ms of voice while the replica talks: mute it now, decide at the onset (or the blip)."""
        if self.sink is None or not self.replica_audible:
            return
        if self.barge_in_gate is not None and not self.barge_in_gate.accept(t_ns):
            return
        with self._lock:
            if self._ducked_ns is None:
                self._ducked_ns = self.sink.duck(True)

    def _on_blip(self) -> None:
        if self._unduck():
            self.false_ducks += 1  # a cough or an echo: the reply lost ~100 ms of sound, nothing else

    def _unduck(self) -> bool:
        with self._lock:
            ducked, self._ducked_ns = self._ducked_ns, None
        if ducked is not None and self.sink is not None:
            self.sink.duck(False)
        return ducked is not None

    def _on_onset(self, onset_ns: int) -> None:
        if self.replica_audible and self.barge_in_gate is not None and not self.barge_in_gate.accept(onset_ns):
            self.rejected_onsets += 1  # not the user (echo, noise): ignore this utterance entirely
            if self._unduck():
                self.false_ducks += 1
            return
        with self._lock:
            self._user_speaking = True
            self._listening_turn = next(self._ids)
            turn_id = self._listening_turn
        self._merge_into_next()  # a held fragment, or a reply not heard yet, is the start of this utterance
        with self._lock:
            busy = self._active is not None
        if busy and not self._pause_reply(onset_ns):
            self.interrupt("barge-in", onset_ns=onset_ns)
        self._unduck()
        self.bus.publish(ev.SpeechStarted(turn_id, t_ns=onset_ns))
        self._set_state(ev.AgentState.LISTENING)

    def _on_pause(self, utt: Utterance) -> None:
        """First silent frame: start the whole reply now, heard only if the user stays quiet."""
        if not self.speculate or self._listening_turn is None:
            return
        spec = Speculation(self._listening_turn, CancelToken())
        with self._lock:
            self._speculation = spec
            if self._partial is not None:
                self._partial.cancel("the user paused")
        self.speculations["started"] += 1
        self.cpu.enter(Phase.THINKING, spec.turn_id)  # the critical path starts at the first silent frame
        self._asr.submit(AsrJob(spec.turn_id, utt, speculation=spec))

    def _on_resume(self) -> None:
        self._drop_speculation("user resumed")
        self._repause_if_speaking()

    def _drop_speculation(self, reason: str) -> None:
        with self._lock:
            spec, self._speculation = self._speculation, None
            if spec is None:
                return
            spec.cancel.cancel(reason)
        if spec.turn is not None:  # a reply was already being made: none of it is shown or heard
            self.speculations["discarded_replies"] += 1
            spec.turn.outbox.discard()
            spec.turn.first_audio_ready.set()  # wake an LLM waiting for this turn's audio
            spec.turn.finished.set()
        self.speculations["discarded"] += 1
        self._plan_listening()

    def _on_end(self, utt: Utterance) -> None:
        with self._lock:
            turn_id, self._listening_turn = self._listening_turn, None
            spec, self._speculation = self._speculation, None
            if self._partial is not None:
                self._partial.cancel("end of turn")
            if spec is not None:
                spec.ended = utt
            ready = spec is not None and spec.transcript is not None
        if turn_id is None:
            return
        self.bus.publish(ev.SpeechEnded(turn_id, voice_end_ns=utt.voice_end_ns))
        self.cpu.enter(Phase.THINKING, turn_id)
        if spec is None:
            self._asr.submit(AsrJob(turn_id, utt))
        elif ready:
            self._settle(spec)
        # else: the speculative ASR is still running and settles the turn when it is done

    # -- ASR worker ----------------------------------------------------------------

    def _on_asr_job(self, job: AsrJob) -> None:
        if self.engines.asr is None:
            return
        if job.partial is not None:
            self._run_partial(job)
            return
        if job.speculation is not None:
            self._speculate(job.speculation, job.utterance)
            return
        transcript = self._transcribe(job.turn_id, job.utterance.audio)
        backchannel = self._settle_paused(transcript.text, transcript.doubtful)
        verdict = _verdict(job.turn_id, transcript)
        reason = BACKCHANNEL if backchannel else verdict.not_a_turn
        turn = Turn(job.turn_id, user_text=self._with_carried(transcript.text), fixed_reply=verdict.fixed_reply)
        proceeds = self._hand_over(turn if verdict.is_turn and not backchannel else None)
        self.bus.publish(
            ev.TranscriptFinal(job.turn_id, transcript.text, asr_ms=transcript.compute_ms, not_a_turn=reason)
        )
        if proceeds:
            self._begin_reply(turn)
        elif self._listening_turn is None:
            self._listen_again()

    def _speculate(self, spec: Speculation, utt: Utterance) -> None:
        """Transcribe what was said so far and start the reply, held back until the turn ends."""
        assert self.engines.asr is not None
        if spec.cancel.cancelled:
            return
        try:
            transcript = self._transcribe(spec.turn_id, utt.audio, spec.cancel)
        except Cancelled:
            return  # the user went on speaking
        if spec.cancel.cancelled:
            return
        backchannel = self._settle_paused(transcript.text, transcript.doubtful)  # the reply resumes, or is cut
        with self._lock:
            if spec.cancel.cancelled:
                return
            spec.transcript, spec.transcript_ns = transcript, ev.now_ns()
            verdict = _verdict(spec.turn_id, transcript)
            spec.not_a_turn = BACKCHANNEL if backchannel else verdict.not_a_turn
            if verdict.is_turn and not backchannel:
                spec.turn = Turn(
                    spec.turn_id,
                    user_text=self._with_carried(transcript.text),
                    cancel=spec.cancel,
                    fixed_reply=verdict.fixed_reply,
                )
                spec.turn.outbox = Outbox(held=True)  # opened by the commit, on the turn model's verdict
        self._judge_end(spec, utt.audio)
        if spec.turn is not None:
            self._begin_reply(spec.turn)
        self._settle(spec)  # commits or holds, if the VAD has ended the turn already

    def _commit(self, spec: Speculation) -> None:
        """The user stayed quiet: the speculative transcript is final and the reply goes out."""
        assert spec.transcript is not None
        self.speculations["reused"] += 1
        proceeds = self._hand_over(spec.turn)
        self.bus.publish(
            ev.TranscriptFinal(
                spec.turn_id,
                spec.transcript.text,
                asr_ms=spec.transcript.compute_ms,
                speculative_reused=True,
                t_ns=spec.transcript_ns,
                not_a_turn=spec.not_a_turn,
            )
        )
        if proceeds:
            assert spec.turn is not None
            spec.turn.outbox.open()
        elif self._listening_turn is None:
            self._listen_again()

    def _plan_listening(self) -> None:
        """Back to the listening plan, unless a reply is still being made or played."""
        with self._lock:
            replying = self._active is not None
        if not replying:
            self.cpu.enter(Phase.LISTENING)

    def _listen_again(self) -> None:
        """Nothing to reply to: the plan and the state return to listening (or speaking, after a backchannel)."""
        self._plan_listening()
        self._set_state(ev.AgentState.SPEAKING if self.replica_audible else ev.AgentState.LISTENING)

    def _with_carried(self, text: str) -> str:
        """The user's words, after any they said in a turn that a new utterance overtook."""
        with self._lock:
            return f"{self._carried} {text}".strip() if self._carried and text.strip() else text

    def _hand_over(self, turn: Turn | None) -> bool:
        """From "user speaking" to "replying", atomically; False when there is nothing to reply to.

        If the user already began a new utterance (a short pause that still ended the
        turn), the finished turn is not answered: its words are carried into the next
        turn's prompt, and it is logged with no reply, so nothing is lost.
        """
        with self._lock:
            overtaken = turn is not None and self._listening_turn is not None
            if overtaken:
                self._carried = turn.user_text  # type: ignore[union-attr]
            else:
                self._user_speaking = False
                if turn is not None:
                    self._active, self._carried = turn, ""
            self._idle.notify_all()
        if overtaken:
            assert turn is not None
            turn.cancel.cancel("overtaken by the next utterance")
            turn.outbox.discard()
            turn.first_audio_ready.set()
            self._finish(turn)
        return turn is not None and not overtaken


def _verdict(turn_id: int, transcript: Transcript) -> Verdict:
    """Whether the transcript is a turn; a filler, noise or a doubted decode is logged and gets no reply."""
    verdict = judge(transcript.text, transcript.doubtful, transcript.audio_s)
    if verdict.fixed_reply:
        log.info("turn %d: %s (%s)", turn_id, verdict.reason, transcript.engine)
    if not verdict.is_turn:
        log.info(
            "turn %d is not a turn: %s (%s, %.0f ms)", turn_id, verdict.reason, transcript.engine, transcript.compute_ms
        )
    return verdict
