"""The CPU plan: who may use the two cores in each phase of a turn.

A turn has three phases.  *Listening*: the user speaks; ASR and the VAD need
little, the face idles.  *Thinking* (end of speech -> first audio): the
critical path (ASR -> LLM up to the first clause -> TTS of that clause) owns
both cores; the face paints few frames and nothing else starts.  *Speaking*:
the face must hold its full frame rate, and the LLM only has to stay ahead of
playback, so later sentences' TTS waits until the LLM has finished (or the
queued audio runs low), instead of fighting it for the same two cores.

Stages consult this one object rather than carrying their own thread and
frame-rate settings: the LLM worker reads its thread count, the replica stage
its frame rate, the TTS worker asks whether it may start a later sentence.
Thread priorities are set once per stage thread (``adopt_thread``): Linux lets
an unprivileged process lower a thread's priority but not raise it back, so a
per-phase renice would be a one-way street.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum

from app.config import Config
from app.core.thread_priority import lower_thread_priority

_log = logging.getLogger(__name__)

# Waiting stages are woken by notify (``wake`` for a cancelled turn or a resumed reply); this is only the
# backstop for a wake-up nobody sent.  It was a 30 ms poll: each wake-up costs the decoding LLM (docs/cpu-plan.md).
_BACKSTOP_S = 0.5


class Phase(Enum):
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass(frozen=True)
class PhaseBudget:
    """What one phase allows."""

    llm_threads: int  # llama.cpp decode threads
    face_fps: float  # the replica's frame rate (speech frames always come at its full rate)
    later_tts_waits_for_llm: bool  # later sentences' TTS starts once the LLM is done (or audio runs low)
    # The face draws nothing for this long after the phase begins (a blink under way ends first), then
    # idles at ``face_fps``: an idle frame beside the critical path stalls the LLM's threads like any other.
    face_still_s: float = 0.0


@dataclass(frozen=True)
class CpuPlanSettings:
    listening: PhaseBudget = PhaseBudget(llm_threads=2, face_fps=15.0, later_tts_waits_for_llm=False)
    thinking: PhaseBudget = PhaseBudget(llm_threads=2, face_fps=8.0, later_tts_waits_for_llm=True, face_still_s=1.0)
    speaking: PhaseBudget = PhaseBudget(llm_threads=2, face_fps=30.0, later_tts_waits_for_llm=True)
    # A later sentence is synthesized anyway when less than this much reply audio is left to play.
    tts_low_water_s: float = 1.2
    # LLM decode threads while a sentence is synthesized beside it (the low-water case, or the rest of
    # the first clause): Piper's and llama.cpp's thread teams on two cores made single tokens wait out
    # scheduler slices at the LLM's spin barriers (one took 728 ms in the bench pipeline).  0: the LLM
    # waits for the synthesis instead; one thread beside Piper's two ran ~40 ms tokens (docs/cpu-plan.md).
    llm_threads_beside_tts: int = 0
    llm_wait_for_tts_max_s: float = 2.0  # a synthesis longer than this no longer holds the LLM
    tts_waits_for_llm_max_s: float = 0.04  # the most a synthesis waits for the LLM to finish its token
    # While the user talks over a reply (paused until their words say barge-in or backchannel), its
    # later sentences wait: vocoding them beside the drafts' ASR and prefill made a 9-token prompt take 1.1 s.
    tts_waits_while_held: bool = True
    # While the LLM decodes beside a speaking face, the face renders this far ahead in one burst
    # while the LLM rests, instead of a frame every 33 ms beside it: each render beside the LLM's
    # two threads stalls both (one waits at the barriers).  Long-session turns, paired: 70 -> 80
    # tok/s, faster in 14 of 19 (docs/cpu-plan.md, "The face ahead of the LLM").  0: no bursts.
    face_ahead_s: float = 0.5
    face_refill_s: float = 0.1  # a burst starts when fewer frames than this are left
    face_burst_max_s: float = 0.15  # the most the LLM waits for one burst
    face_waits_for_llm_max_s: float = 0.04  # the most a burst waits for the LLM to finish its token
    # Niceness added to threads that are never on the critical path (the face; the GUI paints from its own).
    background_nice: int = 4
    enabled: bool = True

    def budget(self, phase: Phase) -> PhaseBudget:
        return {Phase.LISTENING: self.listening, Phase.THINKING: self.thinking, Phase.SPEAKING: self.speaking}[phase]

    @classmethod
    def off(cls, llm_threads: int = 2) -> CpuPlanSettings:
        """No plan: every phase like listening, no deferral, no renice (the bench's OFF arm)."""
        free = PhaseBudget(llm_threads=llm_threads, face_fps=15.0, later_tts_waits_for_llm=False)
        return cls(
            listening=free,
            thinking=free,
            speaking=free,
            background_nice=0,
            tts_waits_while_held=False,
            enabled=False,
            llm_threads_beside_tts=llm_threads,
            face_ahead_s=0.0,
        )


@dataclass(frozen=True)
class EngineThreading:
    """What the plan fixes when an engine is built (a session's thread pool cannot change per phase)."""

    # How Piper's ONNX Runtime workers wait (app/engines/tts_piper.py, WORKER_WAITS).  ORT's default
    # keeps them spinning after every run: after each sentence Piper's two spun beside the LLM and
    # pipeline TPS fell to 69-71 tok/s.  "spin-in-run" stops them when a synthesis returns: TPS
    # 71 -> 85 and Piper's first audio 161 -> 142 ms in the levers' run; "sleep" (never spin) gave
    # the TPS but slowed Piper's first audio in 7 of 7 pairs there (docs/cpu-plan.md).
    tts_workers: str = "spin-in-run"


ENGINE_THREADING = EngineThreading()


def plan_settings(config: Config) -> CpuPlanSettings:
    """The plan for ``config``: its LLM thread count in every phase, or no plan when switched off."""
    if not config.cpu_plan:
        return CpuPlanSettings.off(config.llm_threads)
    plan = CpuPlanSettings()
    return replace(
        plan,
        listening=replace(plan.listening, llm_threads=config.llm_threads),
        thinking=replace(plan.thinking, llm_threads=config.llm_threads),
        speaking=replace(plan.speaking, llm_threads=config.llm_threads),
    )


Applier = Callable[[PhaseBudget], None]


@dataclass
class PhaseSwitch:
    """One entry of the plan's journal (tests and the bench read it)."""

    phase: Phase
    turn_id: int
    t_ns: int
    budget: PhaseBudget


@dataclass
class _Threads:
    by_role: dict[str, int] = field(default_factory=dict)  # role -> native thread id


class CpuPlan:
    """The current phase, the stages' appliers, and the deferral rule for later TTS."""

    def __init__(self, settings: CpuPlanSettings | None = None) -> None:
        self.settings = settings or CpuPlanSettings()
        self._phase = Phase.LISTENING
        self._turn_id = 0
        self._lock = threading.Condition()
        self._appliers: list[Applier] = []
        self._llm_busy = False
        self._tts_busy = 0  # synthesis calls running now
        self._face_wants_cores = False  # the face asked the decoding LLM to rest for a burst
        self._llm_resting = False  # between tokens and waiting (for the face, the first audio, a synthesis)
        self._news = 0  # notifications so far
        self.journal: list[PhaseSwitch] = []
        self._threads = _Threads()

    # -- phases ------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def budget(self) -> PhaseBudget:
        """The phase's budget, with the LLM's threads cut while a sentence is synthesized beside it."""
        budget = self.settings.budget(self._phase)
        beside = self.settings.llm_threads_beside_tts
        if self._tts_busy and 1 <= beside < budget.llm_threads:
            budget = replace(budget, llm_threads=self.settings.llm_threads_beside_tts)
        return budget

    def on_change(self, applier: Applier) -> None:
        """``applier(budget)`` runs now and at every phase switch (keep it cheap, non-blocking)."""
        with self._lock:
            self._appliers.append(applier)
        applier(self.budget)

    def enter(self, phase: Phase, turn_id: int = 0) -> None:
        """Switch phase; a no-op when already there."""
        with self._lock:
            if phase is self._phase:
                self._turn_id = turn_id or self._turn_id
                return
            self._phase, self._turn_id = phase, turn_id
            budget = self.budget
            self._note(budget)
            appliers = list(self._appliers)
            self._notify()
        self._apply(appliers, budget)

    def _note(self, budget: PhaseBudget) -> None:
        self.journal.append(PhaseSwitch(self._phase, self._turn_id, time.monotonic_ns(), budget))
        if len(self.journal) > 200:
            del self.journal[:100]

    def _apply(self, appliers: list[Applier], budget: PhaseBudget) -> None:
        for apply in appliers:
            try:
                apply(budget)
            except Exception:  # a stage that cannot follow the plan must not break the turn
                _log.exception("CPU plan: applying %s failed", self._phase.value)

    # -- the LLM's share ------------------------------------------------------------------

    def _notify(self) -> None:
        """Under the lock: every waiting stage looks again (``_news`` tells one that was not waiting yet)."""
        self._news += 1
        self._lock.notify_all()

    def wake(self) -> None:
        """Waiting stages look again: a turn was cancelled or its reply resumed (nothing else announces those)."""
        with self._lock:
            self._notify()

    def llm_started(self) -> None:
        with self._lock:
            self._llm_busy = True

    def llm_finished(self) -> None:
        with self._lock:
            self._llm_busy = False
            self._notify()

    def wait_while_tts(self, stop: Callable[[], bool], before_wait: Callable[[], None] | None = None) -> float:
        """The LLM's side of a synthesis running beside it: wait for it to end when the plan says so.

        ``before_wait`` runs once if it will wait (the LLM's workers go to sleep).  Returns the
        milliseconds waited (0 when nothing ran, or the plan keeps the LLM going).
        """
        if self.settings.llm_threads_beside_tts > 0:
            return 0.0
        started = time.perf_counter()
        deadline = started + self.settings.llm_wait_for_tts_max_s
        with self._lock:
            if not self._tts_busy:
                return 0.0  # asked after every token: no notify then, or each token woke every waiting stage
        if before_wait is not None:
            before_wait()  # outside the plan's lock: it may take the engine's
        with self._lock:
            self._llm_resting = True
            self._notify()  # a face burst waiting for the LLM to rest
            while self._tts_busy and not stop() and time.perf_counter() < deadline:
                self._lock.wait(min(_BACKSTOP_S, max(0.0, deadline - time.perf_counter())))  # its end notifies
            self._llm_resting = False
        waited = time.perf_counter() - started
        return waited * 1000 if waited > 0.001 else 0.0

    def tts_started(self) -> float:
        """A synthesis begins: the LLM waits (or drops to its beside-TTS thread count) until it ends.

        A waiting LLM first finishes its token: Piper's threads started beside it stalled it at its barriers.
        """
        self._tts_step(+1)
        if self.settings.llm_threads_beside_tts > 0:
            return 0.0
        started = time.perf_counter()
        self._until_llm_rests(self.settings.tts_waits_for_llm_max_s)
        waited = time.perf_counter() - started
        return waited * 1000 if waited > 0.001 else 0.0

    def tts_finished(self) -> None:
        self._tts_step(-1)

    def _tts_step(self, step: int) -> None:
        with self._lock:
            before = self.budget
            self._tts_busy = max(0, self._tts_busy + step)
            after = self.budget
            self._notify()  # an LLM waiting for the synthesis to end
            if after == before:
                return
            appliers = list(self._appliers)
        self._apply(appliers, after)

    def wait_for_tts_turn(
        self, queued_audio_s: Callable[[], float], stop: Callable[[], bool], held: Callable[[], bool] = lambda: False
    ) -> None:
        """Block a later sentence's TTS while the LLM runs, unless the queued audio runs low.

        ``queued_audio_s`` is how much reply audio is still to be played;
        ``stop`` ends the wait early (the turn was cancelled: call ``wake``). While ``held()``
        (the user talks over the reply, which is paused) nothing plays, so the
        sentence waits for the pause to end (``wake`` on resume): the user's new words have the cores.
        """
        while not stop():
            with self._lock:
                seen = self._news
            # Outside the plan's lock, which is taken last: these take the turn's and the speaker's locks.
            held_now = self.settings.tts_waits_while_held and held()
            left_s = 0.0 if held_now else queued_audio_s() - self.settings.tts_low_water_s
            with self._lock:
                if self._news != seen:
                    continue  # the plan changed (or was woken) while those ran: look again
                if held_now:
                    self._lock.wait(_BACKSTOP_S)  # the resume (or the cancel) wakes it
                    continue
                if not (self._llm_busy and self.budget.later_tts_waits_for_llm) or left_s <= 0:
                    return
                # The LLM's end and a phase switch notify; the audio drains on its own, so wake when it is low.
                self._lock.wait(min(_BACKSTOP_S, left_s))

    # -- the face ahead of the LLM ------------------------------------------------------------

    @property
    def face_ahead_s(self) -> float:
        """How far ahead a speaking face renders while the LLM decodes a reply (0: frame by frame)."""
        return self.settings.face_ahead_s if self.settings.enabled else 0.0

    @property
    def llm_decoding(self) -> bool:
        return self._llm_busy

    def face_burst_begin(self) -> bool:
        """The face's side: a burst starts; wait (briefly) for the decoding LLM to rest.  True if it does."""
        with self._lock:
            self._face_wants_cores = True
        return self._until_llm_rests(self.settings.face_waits_for_llm_max_s)

    def _until_llm_rests(self, max_s: float) -> bool:
        """Wait up to ``max_s`` for the decoding LLM to finish its token and rest.  True if it rests (or is done)."""
        deadline = time.perf_counter() + max_s
        with self._lock:
            while self._llm_busy and not self._llm_resting and (left := deadline - time.perf_counter()) > 0:
                self._lock.wait(left)  # the LLM's rest and its end notify
            return not self._llm_busy or self._llm_resting

    def face_burst_end(self) -> None:
        with self._lock:
            self._face_wants_cores = False
            self._notify()

    @contextmanager
    def llm_rests(self) -> Iterator[None]:
        """``with plan.llm_rests():`` around any wait of the decoding LLM, so a face burst need not wait for it."""
        self._set_resting(True)
        try:
            yield
        finally:
            self._set_resting(False)

    def _set_resting(self, resting: bool) -> None:
        with self._lock:
            self._llm_resting = resting
            self._notify()

    def yield_to_face(self, stop: Callable[[], bool], before_wait: Callable[[], None] | None = None) -> float:
        """The LLM's side, between tokens: rest while the face renders a burst, if it asked.  Returns the ms waited."""
        with self._lock:
            if not self._face_wants_cores:
                return 0.0
        started = time.perf_counter()
        if before_wait is not None:
            before_wait()  # outside the plan's lock: it may take the engine's
        deadline = started + self.settings.face_burst_max_s
        with self._lock:
            self._llm_resting = True
            self._notify()
            while self._face_wants_cores and not stop() and (left := deadline - time.perf_counter()) > 0:
                self._lock.wait(min(_BACKSTOP_S, left))  # the burst's end notifies
            self._llm_resting = False
        return (time.perf_counter() - started) * 1000

    # -- threads -------------------------------------------------------------------------

    def adopt_thread(self, role: str, background: bool = False, tid: int | None = None) -> None:
        """Remembers a stage's thread (by default the calling one) and lowers a background thread's priority."""
        tid = tid if tid is not None else threading.get_native_id()
        self._threads.by_role[role] = tid
        if background and self.settings.background_nice > 0:
            lower_thread_priority(tid, self.settings.background_nice)

    @property
    def threads(self) -> dict[str, int]:
        return dict(self._threads.by_role)
