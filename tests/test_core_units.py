"""Pure core pieces: turn detector, chunker, speakable text, played-text accounting, frame pacing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from app.core.chunker import Chunker, number_to_words, speakable
from app.core.turn import Segment, Turn
from app.core.vad import TurnDetector, TurnDetectorSettings, VadDecision


def _run(detector: TurnDetector, probs: list[float]) -> list[VadDecision]:
    return [d for d in (detector.push(p) for p in probs) if d is not VadDecision.NONE]


def test_detector_onset_pause_resume_end() -> None:
    det = TurnDetector(TurnDetectorSettings(silence_ms=256, min_speech_ms=96))  # 8 and 3 frames
    assert _run(det, [0.9] * 2 + [0.1]) == []  # a 64 ms blip is ignored
    decisions = _run(det, [0.9] * 5 + [0.1] * 3 + [0.9] * 4 + [0.1] * 8)
    assert decisions == [
        VadDecision.ONSET,
        VadDecision.PAUSE,
        VadDecision.RESUMED,
        VadDecision.PAUSE,
        VadDecision.END_OF_TURN,
    ]


def test_chunker_first_clause_then_sentences() -> None:
    chunker = Chunker()
    tokens = [
        "Well",
        ",",
        " hello",
        " there",
        " my",
        " friend",
        ",",
        " how",
        " are",
        " you",
        " doing",
        " on",
        " this",
        " fine",
        " day",
        "?",
        " I",
        " hope",
        " well",
        ".",
    ]
    chunks = [c for c in (chunker.push(t) for t in tokens) if c]
    tail = chunker.flush()
    assert chunks[0] == "Well, hello there my friend,"
    assert chunks[1] == "how are you doing on this fine day?"
    assert tail == "I hope well."


def test_chunker_cuts_long_first_clause_at_twelve_tokens() -> None:
    chunker = Chunker()
    out = [c for c in (chunker.push(f" w{i}") for i in range(25)) if c]
    assert out and len(out[0].split()) == 11  # cut at the last word break when 12 tokens came


def test_chunker_splits_first_clause_before_conjunction() -> None:
    chunker = Chunker()
    words = ["I", "really", "like", "the", "sea", "and", "the", "mountains"]
    out = [c for c in (chunker.push(" " + w) for w in words) if c]
    assert out == ["I really like the sea"]


def test_chunker_keeps_initials_and_abbreviations_whole() -> None:
    """ "8000 B.C., and" is one stretch of speech: a chunk may not end at "B." (the voice would pause there)."""
    chunker, out = Chunker(), []
    for token in ["Bread", " was", " first", " made", " around", " 8000", " B", ".", "C", ".,", " and", " it"]:
        out.append(chunker.push(token))
    for token in [" spread", " far", ".", " People", " ate", " it", " in", " the", " U", ".", "S", ".", " too", "."]:
        out.append(chunker.push(token))
    chunks = [c for c in [*out, chunker.flush()] if c]
    assert chunks == ["Bread was first made around 8000 B.C.,", "and it spread far. People ate it in the U.S. too."]


def test_chunker_bounds_run_on_sentences() -> None:
    """A sentence without a full stop is cut at a comma past 100 characters, at a word past 160."""
    chunker = Chunker()
    first = " Well, here goes."
    clauses = " the river bends past the mill" * 6 + ", and" + " the road climbs over the hill" * 8 + "."
    out = [c for c in (chunker.push(t) for t in (first + clauses).split(" ") if t for t in [" " + t]) if c]
    tail = chunker.flush()
    chunks = out + ([tail] if tail else [])
    assert " ".join(chunks).split() == (first + clauses).split()  # nothing lost or reordered
    later = chunks[1:]
    assert len(later) >= 3 and all(len(c) <= 160 for c in later), later
    assert any(c.endswith("mill,") for c in later), later  # the clause boundary was used when one came


def test_speakable_text() -> None:
    assert number_to_words(1999) == "one thousand nine hundred and ninety-nine"
    assert (
        speakable("**Dr.** Smith has 3 cats & 12% of $5.")
        == "Doctor Smith has three cats and twelve percent of five dollars."
    )
    assert speakable("In 1969, we landed.") == "In nineteen sixty-nine, we landed."
    assert speakable("# Title\n- item one\n- item `two`") == "Title item one item two"
    assert speakable("It is 3.14 and the 2nd try") == "It is three point one four and the second try"
    assert speakable("<b>bold</b> [link](http://x)") == "bold link"


def test_played_text_keeps_whole_chunks_and_the_heard_share() -> None:
    turn = Turn(1, texts=["Hello there my friend.", "One two three four five six seven eight."])
    turn.segments = [Segment(0, 1000), Segment(1, 800)]
    assert turn.played_text([1000, 800]) == "Hello there my friend. One two three four five six seven eight."
    assert turn.played_text([1000, 400]) == "Hello there my friend. One two three four…"
    assert turn.played_text([500, 0]) == "Hello there…"
    assert turn.played_text([0, 0]) == ""


def test_clock_times_are_read_as_times() -> None:
    assert speakable("It's 10:28 AM.") == "It's ten twenty-eight A M."
    assert speakable("at 9:05 or 7:00") == "at nine oh five or seven o'clock"


class _ScriptedFace:
    """A face whose speech schedule the test sets; records the instants it was asked to render."""

    fps, idle_fps = 30.0, 15.0

    def __init__(self) -> None:
        self.speech: tuple[int, int] | None = None
        self.rendered: list[int] = []

    def render(self, t_ns: int):
        from types import SimpleNamespace

        self.rendered.append(t_ns)
        on = self.speech is not None and self.speech[0] <= t_ns < self.speech[1]
        return SimpleNamespace(speaking=on)

    def next_speech_ns(self, t_ns: int) -> int | None:
        if self.speech is None or self.speech[1] <= t_ns:
            return None
        return max(t_ns, self.speech[0])


def test_replica_stage_idles_slowly_and_speaks_at_full_rate_from_the_first_sample() -> None:
    from app.core.events import now_ns
    from app.core.replica_stage import ReplicaStage

    face = _ScriptedFace()
    speaking: list[int] = []
    stage = ReplicaStage(face, lambda _f: None, lambda _i, _t: speaking.append(len(face.rendered) - 1))
    stage.start()
    time.sleep(0.6)
    start = now_ns() + 150_000_000  # speech queued to start 150 ms from now, between idle ticks
    face.speech = (start, start + 600_000_000)
    stage.wake()
    time.sleep(1.0)
    assert stage.stop()
    ticks = np.array(face.rendered)
    idle_gaps = np.diff(ticks[ticks < start]) / 1e6
    assert len(idle_gaps) >= 4 and np.median(idle_gaps) == pytest.approx(1000 / 15, abs=1)
    first = face.rendered[speaking[0]]
    assert first == start  # the first speaking frame shows the first sample, not the next idle tick
    talk_gaps = np.diff(ticks[(ticks >= start) & (ticks < start + 600_000_000)]) / 1e6
    assert np.median(talk_gaps) == pytest.approx(1000 / 30, abs=1)


def test_after_a_stall_the_replica_draws_the_present_at_once() -> None:
    """A frame held up by a busy machine is followed at once by one for the present, not a tick later."""
    from app.core.events import now_ns
    from app.core.replica_stage import ReplicaStage

    class StallingFace(_ScriptedFace):
        stalled_until: int | None = None

        def render(self, t_ns: int):
            frame = super().render(t_ns)
            if len(self.rendered) == 8:  # one render takes three frame periods
                time.sleep(0.1)
                self.stalled_until = now_ns()
            return frame

    face = StallingFace()
    face.speech = (now_ns(), now_ns() + 10**10)
    stage = ReplicaStage(face, lambda _f: None)
    stage.start()
    time.sleep(0.5)
    assert stage.stop()
    assert face.stalled_until is not None
    after = face.rendered[8]
    assert after >= face.stalled_until  # the present, not a missed instant
    assert (after - face.stalled_until) / 1e6 < 20  # drawn at once (the next tick would be 33 ms on)
    gaps = np.diff(face.rendered[9:]) / 1e6
    assert np.median(gaps) == pytest.approx(1000 / 30, abs=1)  # then the steady rate again


def test_detector_early_voice_then_onset_or_blip() -> None:
    det = TurnDetector(TurnDetectorSettings(silence_ms=256, min_speech_ms=160, early_speech_ms=64))  # 5 and 2 frames
    assert _run(det, [0.9, 0.9, 0.1]) == [VadDecision.EARLY_ONSET, VadDecision.BLIP]  # a cough
    assert _run(det, [0.9] * 5) == [VadDecision.EARLY_ONSET, VadDecision.ONSET]  # the user, barging in
    assert _run(det, [0.1] * 8) == [VadDecision.PAUSE, VadDecision.END_OF_TURN]
    assert _run(TurnDetector(TurnDetectorSettings(min_speech_ms=160)), [0.9] * 5) == [VadDecision.ONSET]  # off
    assert _run(det, [0.1] * 3 + [0.9] * 5) == [VadDecision.EARLY_ONSET, VadDecision.ONSET]  # a new turn: counts anew


def test_an_unvoiced_onset_mutes_early_at_the_lower_bar_but_opens_no_turn_by_itself() -> None:
    """'Stop.' begins with an "s" Silero scores 0.25-0.45: it mutes the replica, the vowel opens the turn."""
    stop = [0.25, 0.28, 0.42, 0.36, 0.80, 0.92, 0.93, 0.94, 0.95]  # espeak's "Stop.", frame by frame
    lower = TurnDetector(TurnDetectorSettings(min_speech_ms=160, early_speech_ms=64, early_threshold=0.25))
    same_bar = TurnDetector(TurnDetectorSettings(min_speech_ms=160, early_speech_ms=64))
    at_lower, at_same = [lower.push(p) for p in stop], [same_bar.push(p) for p in stop]
    assert at_lower.index(VadDecision.EARLY_ONSET) == 1 and at_same.index(VadDecision.EARLY_ONSET) == 5  # 128 ms sooner
    assert at_lower.index(VadDecision.ONSET) == at_same.index(VadDecision.ONSET) == 8  # the turn opens on voice alone
    hiss = TurnDetector(TurnDetectorSettings(min_speech_ms=160, early_speech_ms=64, early_threshold=0.25))
    assert _run(hiss, [0.3, 0.3, 0.1, 0.0]) == [VadDecision.EARLY_ONSET, VadDecision.BLIP]  # muted 64 ms, let go


def test_ducked_playout_keeps_its_pace_unheard() -> None:
    from app.core.audio_io import PlayoutBuffer, PlayTag

    buffer = PlayoutBuffer(1000)
    tag = PlayTag(1, 0)
    buffer.push(np.ones(300, dtype=np.float32), tag)
    assert buffer.pull(100, 0).min() == 1.0
    buffer.duck(True)
    assert not buffer.pull(100, 0).any()  # muted...
    assert buffer.played_samples(tag) == 200  # ...but the speech ran on, so the lips stay in sync
    buffer.duck(False)
    assert buffer.pull(100, 0).min() == 1.0


def test_history_gets_cut_replies_in_whole_sentences_without_the_marker() -> None:
    from app.core.turn import heard_for_history

    assert heard_for_history("Paris is big. It has a…") == "Paris is big."
    assert heard_for_history("Paris is…") == ""  # only a fragment: left out of the model's history
    assert heard_for_history("Paris is big.") == "Paris is big."


def test_worker_flush_waits_for_the_jobs_queued_before_it() -> None:
    import threading

    from app.core.workers import Worker

    done: list[int] = []
    gate = threading.Event()
    worker: Worker[int] = Worker("t", lambda n: (gate.wait(5), time.sleep(0.01), done.append(n)))
    worker.start()
    for n in range(3):
        worker.submit(n)
    assert not worker.flush(0.05)  # the first job is still held at the gate
    gate.set()
    assert worker.flush(5.0) and done == [0, 1, 2]
    assert worker.stop()


def test_a_cancel_calls_its_callbacks_once_and_at_once_when_already_cancelled() -> None:
    from app.core.cancel import CancelToken

    token, calls = CancelToken(), []
    token.on_cancel(lambda: calls.append("a"))
    forget_b = token.on_cancel(lambda: calls.append("b"))
    forget_b()  # the work finished before any cancel: it is not told
    token.cancel("barge-in")
    token.cancel("again")
    assert calls == ["a"] and token.reason == "barge-in"
    token.on_cancel(lambda: calls.append("late"))  # registered after the cancel: called right away
    assert calls == ["a", "late"]
