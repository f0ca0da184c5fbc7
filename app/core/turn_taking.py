"""Turn-taking beyond a fixed silence: hold an unfinished turn, merge its fragment, ride out "mm-hmm".

Mixed into ``Conversation`` beside ``ListeningSide`` (which calls in here at
each VAD decision).  Three behaviours, each a policy of ``TurnModel`` or
``fillers`` applied to the pipeline:

* **Hold.** At the end of the short silence the turn model judges the words;
  an unfinished turn ("so I was thinking about") is held until the long
  silence passes.  Its reply was already speculated and waits, held.
* **Merge.** Voice during the hold, or before a committed reply was heard,
  makes the fragment the start of the next utterance: its words are carried
  into that turn's prompt (whose KV cache already holds them), and it gets no
  reply of its own.
* **Backchannel.** Voice while the replica speaks pauses the playout at the
  sample it reached.  If the utterance is a listener's "mm-hmm", "yeah", a
  laugh or a cough, the reply resumes there, lips and audio together, and
  the utterance is not a turn; anything else interrupts it as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.config import Config
from app.core import events as ev
from app.core.audio_io import AudioSink, PlayTag
from app.core.bus import EventBus
from app.core.cpu_plan import CpuPlan
from app.core.fillers import is_backchannel
from app.core.jobs import EngineSet, Face, Speculation
from app.core.turn import Turn
from app.core.turn_model import EndJudgement, TurnModel, TurnWindow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PausedReply:
    turn: Turn
    onset_ns: int  # the user's voice onset that paused it
    silent_ns: int  # when the replica fell silent
    paused_at: float  # perf_counter, for the pause's length


def turn_model_for(config: Config, audio_model: object | None = None) -> TurnModel:
    """The composition root's turn model: the config's cues and windows."""
    window = TurnWindow(config.silence_ms, max(config.silence_ms, config.max_silence_ms))
    return TurnModel(config.turn_cues, window, audio_model, config.turn_llm_threshold)  # type: ignore[arg-type]


class TurnTakingSide:
    """Mixed into ``Conversation``; its methods run on the VAD, ASR and LLM worker threads."""

    config: Config
    engines: EngineSet
    bus: EventBus
    sink: AudioSink | None
    face: Face | None
    turn_model: TurnModel
    cpu: CpuPlan
    _lock: threading.RLock
    _active: Turn | None
    _carried: str
    _ducked_ns: int | None
    _commit: Callable[[Speculation], None]
    _set_state: Callable[[ev.AgentState], None]
    interrupt: Callable[..., None]
    # State (class defaults: the host need not declare them).
    _held: Speculation | None = None
    _held_until_ns: int = 0
    _paused: PausedReply | None = None
    held_turns: int = 0  # turns the model judged unfinished and held
    merged_fragments: int = 0  # held or unheard turns that became the start of the next one
    backchannels: int = 0  # utterances during a reply that let it resume

    # -- end of turn: judge, hold, commit ---------------------------------------------------

    def _judge_end(self, spec: Speculation, audio: np.ndarray) -> None:
        """ASR thread, with the transcript: the text (and audio) cues now, the LLM's with its prompt."""
        assert spec.transcript is not None
        if spec.turn is None:
            spec.judgement = EndJudgement(True, spec.not_a_turn or "no reply to hold")
            return
        transcript = spec.transcript
        judgement = self.turn_model.judge(transcript.text, audio, transcript.last_word_p, transcript.doubtful)
        llm_cue = getattr(self.engines.llm, "end_of_turn_probability", None)
        if llm_cue is not None and self.turn_model.asks_llm(judgement, spec.transcript.text):
            spec.turn.end_cue = lambda p: self._on_llm_cue(spec, judgement, p)
        else:
            spec.judgement = judgement

    def _on_llm_cue(self, spec: Speculation, judgement: EndJudgement, p_llm: float | None) -> None:
        """LLM thread: P(end of turn) after the user's words, read as the reply's prompt was evaluated."""
        with self._lock:
            if spec.judgement is not None:
                return
            spec.judgement = self.turn_model.with_llm(judgement, p_llm)
        self._settle(spec)

    def _settle(self, spec: Speculation) -> None:
        """Once the short silence has passed and the verdict is in: commit now, or hold for more words."""
        with self._lock:
            if spec.settled or spec.ended is None or spec.judgement is None or spec.cancel.cancelled:
                return
            spec.settled = True
            judgement = spec.judgement
            wait_ms = self.turn_model.wait_ms(judgement)
            hold = not judgement.complete
            if hold:
                self._held = spec
                self._held_until_ns = spec.ended.voice_end_ns + wait_ms * 1_000_000
                self.held_turns += 1
        self.bus.publish(ev.TurnJudged(spec.turn_id, judgement.complete, judgement.reason, wait_ms, judgement.p_llm))
        if hold:
            log.info("turn %d held up to %d ms of silence: %s", spec.turn_id, wait_ms, judgement.reason)
        else:
            self._commit(spec)

    def _check_held(self, t_ns: int) -> None:
        """VAD thread, every frame: a held turn whose long silence has passed is committed."""
        with self._lock:
            spec = self._held
            if spec is None or t_ns < self._held_until_ns:
                return
            self._held = None
        self._commit(spec)

    def _merge_into_next(self) -> None:
        """VAD thread, at an onset: a held turn, or a reply not heard yet, joins the utterance now starting."""
        with self._lock:
            spec, self._held = self._held, None
            active = self._active
            unheard = (
                active is not None
                and not active.first_audio_played
                and not active.cancel.cancelled
                and not self.turn_model.fixed  # the fixed window (the bench's baseline) cuts it, as before
            )
        if spec is not None:
            assert spec.transcript is not None
            text = spec.turn.user_text if spec.turn is not None else spec.transcript.text
            spec.cancel.cancel("merged into the next utterance")
            if spec.turn is not None:
                spec.turn.outbox.discard()
                spec.turn.first_audio_ready.set()
                spec.turn.finished.set()
            self._carry(spec.turn_id, text)
        elif unheard:
            assert active is not None
            self.interrupt("merged into the next utterance")
            self._carry(active.id, active.user_text)

    def _carry(self, turn_id: int, text: str) -> None:
        with self._lock:
            self._carried = text
            self.merged_fragments += 1
        log.info("turn %d merged into the next utterance: %r", turn_id, text[-60:])
        self.bus.publish(ev.FragmentMerged(turn_id, text))

    # -- backchannels: pause, then resume or interrupt --------------------------------------

    def _pause_reply(self, onset_ns: int) -> bool:
        """VAD thread, voice while the replica speaks: stop the playout where it is. False: interrupt instead."""
        if not self.config.backchannels_resume or self.sink is None:
            return False
        with self._lock:
            turn = self._active
            if turn is None or turn.paused or turn.cancel.cancelled or not turn.first_audio_played:
                return False
            turn.paused = True
            silent_ns = self.sink.hold(True)
            if self._ducked_ns is not None:  # muted for early voice already: that is when it fell silent
                silent_ns = min(silent_ns, self._ducked_ns)
            self._paused = PausedReply(turn, onset_ns, silent_ns, time.perf_counter())
        if self.face is not None:
            self.face.clear_buffer()
        self.bus.publish(ev.ReplyPaused(turn.id, onset_ns=onset_ns, silent_ns=silent_ns))
        return True

    def _settle_paused(self, text: str, doubtful: bool) -> bool:
        """With the utterance's transcript: True if it was a backchannel (the reply resumed, no reply to it)."""
        with self._lock:
            paused, self._paused = self._paused, None
        if paused is None:
            return False
        if paused.turn.cancel.cancelled or paused.turn.finished.is_set():
            return False
        if is_backchannel(text, doubtful):
            self._resume(paused, text)
            return True
        self.interrupt("barge-in", onset_ns=paused.onset_ns, silent_ns=paused.silent_ns)
        return False

    def _resume(self, paused: PausedReply, text: str) -> None:
        """The reply goes on from the sample it stopped at; the face is given the rest of each sentence."""
        assert self.sink is not None
        turn = paused.turn
        with self._lock:
            turn.paused = False
            self.cpu.wake()  # its later sentences may be synthesized again
            self.backchannels += 1
            resume_ns = self.sink.hold(False)
            start_ns = resume_ns
            rest: list[tuple[object, int]] = []
            for index, segment in enumerate(turn.segments):
                played = self.sink.played_samples(PlayTag(turn.id, index))
                left = segment.n_samples - played
                if left <= 0:
                    continue
                if segment.chunk is not None:
                    offset = round(played * segment.chunk.sample_rate / self.sink.sample_rate)
                    rest.append((segment.chunk.tail(offset), start_ns))
                start_ns += int(left * 1e9 / self.sink.sample_rate)
        if self.face is not None:
            for chunk, at_ns in rest:
                self.face.push_audio(chunk, at_ns)  # type: ignore[arg-type]
        paused_ms = (time.perf_counter() - paused.paused_at) * 1000
        log.info("turn %d resumed after a backchannel (%r, paused %.0f ms)", turn.id, text[:40], paused_ms)
        self.bus.publish(ev.ReplyResumed(turn.id, text, paused_ms))
        self._set_state(ev.AgentState.SPEAKING)

    def _repause_if_speaking(self) -> None:
        """VAD thread, the user's voice came back within the utterance: a resumed reply pauses again."""
        with self._lock:
            turn = self._active
            audible = turn is not None and turn.first_audio_played and not turn.paused and not turn.finished.is_set()
        if audible and self._paused is None:
            self._pause_reply(ev.now_ns())
