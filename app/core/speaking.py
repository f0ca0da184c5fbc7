"""The replica's side of a turn: what was made, played and shown, and when the turn is over.

Split from ``Conversation`` (which mixes this in) like ``ListeningSide``: these
methods run on the speaker's and the replica's threads and only read the
turn's playout bookkeeping.  The attributes listed on the class are the host's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from app.core import events as ev
from app.core.audio_io import AudioSink, PlayTag
from app.core.bus import EventBus
from app.core.engines import SpeechChunk
from app.core.jobs import Face
from app.core.replica_stage import ReplicaStage
from app.core.turn import Segment, Turn


class SpeakingSide:
    """Mixed into ``Conversation``; runs on the sink and replica threads (``_play``: on the TTS worker's)."""

    sink: AudioSink | None
    face: Face | None
    speech_stage: ReplicaStage | None
    audio_gaps: int
    bus: EventBus
    _lock: threading.RLock
    _active: Turn | None
    _finish: Callable[[Turn], None]
    _set_state: Callable[[ev.AgentState], None]

    def _play(self, turn: Turn, text_index: int, audio: np.ndarray, chunk: SpeechChunk) -> None:
        assert self.sink is not None
        with self._lock:
            if turn.cancel.cancelled:
                return
            seg_index = len(turn.segments)
            if seg_index and self.sink.played_samples(PlayTag(turn.id, seg_index - 1)) >= turn.segments[-1].n_samples:
                self.audio_gaps += 1  # the last sentence had ended before this one was ready: a gap was heard
            turn.segments.append(Segment(text_index, len(audio), chunk))
            start_ns = self.sink.play(audio, PlayTag(turn.id, seg_index))
            paused = turn.paused  # the face gets it when the reply resumes
        if self.face is not None and not paused:
            self.face.push_audio(chunk, start_ns)
            if self.speech_stage is not None:
                self.speech_stage.wake()

    def _unplayed_s(self, turn: Turn) -> float:
        """Reply audio made but not yet heard (all of it while the turn is held or there is no speaker)."""
        if self.sink is None or turn.outbox.held:
            return turn.synthesized_s
        return turn.synthesized_s - sum(self._played_samples(turn)) / self.sink.sample_rate

    # -- playout (sink thread) ----------------------------------------------------------

    def on_chunk_started(self, tag: PlayTag, t_ns: int) -> None:
        with self._lock:
            turn = self._active if self._active is not None and self._active.id == tag.turn_id else None
            first = turn is not None and not turn.first_audio_played
            if first:
                turn.first_audio_played = True  # type: ignore[union-attr]
        if first:
            self.bus.publish(ev.AudioPlayed(tag.turn_id, tag.chunk_index, t_ns=t_ns))
            self._set_state(ev.AgentState.SPEAKING)

    def on_chunk_finished(self, tag: PlayTag, t_ns: int) -> None:
        with self._lock:
            turn = self._active if self._active is not None and self._active.id == tag.turn_id else None
        if turn is not None:
            self._maybe_finish_after_playout(turn)

    def on_replica_frame(self, frame_index: int, t_ns: int) -> None:
        """Called by the replica stage for a frame that shows speech."""
        with self._lock:
            turn = self._active
            # Only this turn's speech counts: the tail of the previous reply's lips must not.
            first = (
                turn is not None
                and turn.first_audio_played
                and not turn.first_frame_shown
                and not turn.cancel.cancelled
            )
            if first:
                turn.first_frame_shown = True  # type: ignore[union-attr]
        if first and turn is not None:
            self.bus.publish(ev.ReplicaFrame(turn.id, frame_index, t_ns=t_ns))

    def _maybe_finish_after_playout(self, turn: Turn) -> None:
        if self.sink is None or not turn.tts_done:
            return
        last = PlayTag(turn.id, len(turn.segments) - 1)
        if self.sink.played_samples(last) >= turn.segments[-1].n_samples:
            self._finish(turn)

    def _played_samples(self, turn: Turn) -> list[int]:
        if self.sink is None:
            return [seg.n_samples for seg in turn.segments]
        return [self.sink.played_samples(PlayTag(turn.id, i)) for i in range(len(turn.segments))]
