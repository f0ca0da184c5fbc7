"""Acoustic echo cancellation of the microphone against our own playout (WebRTC AEC3).

The canceller is the WebRTC audio processing module as shipped in the
``livekit`` wheel (a prebuilt, maintained build of AEC3 + noise suppression;
see docs/duplex.md for why not speexdsp or the old webrtc binding).

Alignment is by timestamps, not by arrival order: the speaker tap tells us
when each played block is *heard* (``heard_at_ns``) and the microphone tells
us when each frame was *captured* (``t_ns``), both on the monotonic clock.
For a 10 ms mic chunk captured at ``t`` we feed AEC3 the reference heard at
``t - delay + lookahead``, so AEC3 always sees a small positive delay (its
own estimator covers 0..~400 ms; a negative delay, i.e. echo before its
reference, defeats it). ``delay`` starts at 0 and is re-measured by GCC-PHAT
cross-correlation of mic and reference while the replica speaks, so
misreported device latencies are corrected within a few seconds.

Mic frames come out with a fixed latency of one frame (32 ms): that slack
lets a chunk wait for reference audio the speaker has not pulled yet.

A fresh AEC3 leaks echo for about a second while it learns the echo path,
enough for a false barge-in on the replica's first words. Until it has
converged the mic is ducked while the replica is audible, like half duplex.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from app.core.audio_io import SOURCE_RATE
from app.duplex.delay import estimate_delay
from app.duplex.leak import LeakDetector
from app.duplex.playout import PlayoutHistory

CHUNK = SOURCE_RATE // 100  # AEC3 works on 10 ms frames
_CHUNK_NS = int(CHUNK * 1e9 / SOURCE_RATE)
_I16 = 32767.0
_FIRST_ESTIMATE_S = 1.5  # early, before AEC3 has converged on a delay we may change
_ESTIMATE_EVERY_S = 2.0
# Two estimates in a row that agree (the same lag within 2 ms, or no echo path either time): the next
# waits longer.  Each is a 10-25 ms burst of FFTs beside the decoding LLM; AEC3 tracks small drifts itself.
_STEADY_ESTIMATE_EVERY_S = 6.0
_STEADY_MS = 2.0
_ESTIMATE_WINDOW_S = 4.0
_MAX_WAIT_S = 0.03  # how long the VAD thread may wait for a late speaker thread
_MAX_LAG_S = 0.5  # echo delays searched, either side of the timestamps
_SAFE_LAG_MS = (5.0, 250.0)  # delays AEC3 handles well (its estimator needs echo after reference)
_MIN_STRENGTH = 0.12
_ACTIVE_RMS = 0.003  # reference louder than this counts as "the replica is speaking"
_ECHO_SPAN_NS = 500_000_000  # playout this recent may still be echoing at the mic
_CONVERGED_RATIO = 10 ** (-15 / 10)
_MIN_WARMUP_CHUNKS = 150  # 1.5 s of echo: device latencies settle in the first second, AEC3 needs loud passages too
_MIN_REWARM_CHUNKS = 50  # after the playout clock jumped: AEC3 keeps its filter, only the delay moved
_MAX_WARMUP_CHUNKS = 300  # 3 s


def webrtc_available() -> bool:
    """True when the WebRTC APM binding (the ``livekit`` wheel) can be loaded."""
    try:
        from livekit.rtc import AudioProcessingModule  # noqa: F401
    except Exception:  # ImportError, or the native library failing to load
        return False
    return True


class EchoCanceller:
    """``MicFilter`` that removes the replica's voice from the microphone (WebRTC AEC3).

    Wire ``tap`` into ``PlayoutBuffer.taps`` of the sink; the conversation calls
    ``process`` with every 512-sample mic frame on its VAD thread.
    """

    def __init__(
        self,
        sink_rate: int,
        *,
        noise_suppression: bool = False,
        lookahead_ms: float = 20.0,
        track_delay: bool = True,
        leak_check: bool = True,
        skip_when_quiet: bool = True,
    ) -> None:
        from livekit import rtc

        self._rtc = rtc
        self.noise_suppression = noise_suppression
        self._apm = self._new_apm()
        self.lookahead_ns = int(lookahead_ms * 1e6)
        self.track_delay = track_delay
        self.delay_ms = 0.0  # measured echo delay beyond what the timestamps say
        self.delay_estimates: list[tuple[float, float]] = []  # (delay_ms, peak strength) as measured
        self.starved_chunks = 0  # chunks processed before their reference arrived
        self.skip_when_quiet = skip_when_quiet  # pass the mic through while nothing can echo
        self.quiet_chunks = 0  # chunks passed through that way
        self._ref = PlayoutHistory(sink_rate)
        self.leak_detector = LeakDetector() if leak_check else None
        self._in = np.zeros(0, dtype=np.float32)
        self._in_t_ns = 0
        self._out: deque[np.ndarray] = deque([np.zeros(512, dtype=np.float32)])
        self._out_len = 512
        self._hist_mic: deque[np.ndarray] = deque(maxlen=int(_ESTIMATE_WINDOW_S * 100))
        self._since_estimate = 0
        self._starved_at_estimate = 0
        self.warmup_ms = 0  # how long the mic was ducked while AEC3 learned the echo path
        self.rewarms = 0  # times the playout clock jumped and the mic was ducked again while AEC3 re-aligned
        self._reanchors_seen = 0
        self._reset_warmup()

    def _reset_warmup(self, min_chunks: int = _MIN_WARMUP_CHUNKS) -> None:
        self._warm = False
        self._min_warmup_chunks = min_chunks
        self._warmup: deque[tuple[float, float]] = deque(maxlen=50)
        self._warmup_chunks = 0

    def _new_apm(self):
        return self._rtc.AudioProcessingModule(
            echo_cancellation=True, noise_suppression=self.noise_suppression, high_pass_filter=True
        )

    # -- speaker side ---------------------------------------------------------------

    def tap(self, block: np.ndarray, heard_at_ns: int) -> None:
        """A block the speaker plays, heard at ``heard_at_ns`` (a ``PlayoutBuffer`` tap)."""
        self._ref.tap(block, heard_at_ns)

    # -- microphone side --------------------------------------------------------------

    @property
    def latency_ns(self) -> int:
        """How much older the audio in a returned frame is than its ``t_ns`` (fixed)."""
        return int(512 * 1e9 / SOURCE_RATE)

    def process(self, frame: np.ndarray, t_ns: int) -> np.ndarray:
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        if not len(self._in):
            self._in_t_ns = t_ns
        self._in = np.concatenate([self._in, frame])
        self._rewarm_after_clock_jump()
        while len(self._in) >= CHUNK:
            ref_t = self._ref_time(self._in_t_ns)
            if self.skip_when_quiet and self._ref.quiet(ref_t - _ECHO_SPAN_NS, ref_t + _CHUNK_NS):
                self._pass_through()
                continue
            ref, known = self._ref.read(ref_t, CHUNK)
            if not known and self._out_len >= len(frame):
                break  # the speaker has not pulled this reference yet; there is slack left
            if not known and self._ref.wait_for(ref_t + _CHUNK_NS, _MAX_WAIT_S):
                ref, known = self._ref.read(ref_t, CHUNK)  # a live speaker thread ran late: it is here now
            self.starved_chunks += not known
            cleaned = self._cancel(self._in[:CHUNK], ref)
            leaking = self.leak_detector is not None and self.leak_detector.push(ref, cleaned, self._in[:CHUNK])
            if not self._converged(self._in[:CHUNK], cleaned, self._in_t_ns, known) or leaking:
                cleaned = np.zeros_like(cleaned)  # learning or re-learning the echo path: duck, like half duplex
            self._emit(cleaned)
        return self._pop(len(frame))

    def _pass_through(self) -> None:
        """No echo can reach the mic (nothing audible played for an echo's span): AEC3 is not asked.

        It kept running on every chunk while the replica was silent, its FFI
        calls and the Python around them beside the ASR and the LLM.  Its
        filter and the delay it sees are kept as they were: the echo path does
        not change while nothing plays, so the next reply is cancelled at once.
        """
        mic = self._in[:CHUNK]
        if self.track_delay:
            self._remember(mic)  # the delay estimate reads the mic as one unbroken stream
        if self.leak_detector is not None:
            self.leak_detector.reset()
        self.quiet_chunks += 1
        self._emit(mic.copy())

    def _emit(self, cleaned: np.ndarray) -> None:
        self._out.append(cleaned)
        self._out_len += CHUNK
        self._in = self._in[CHUNK:]
        self._in_t_ns += _CHUNK_NS

    def _rewarm_after_clock_jump(self) -> None:
        """The speaker's clock jumped (underrun, device restart): duck again until AEC3 has re-aligned.

        The echo then arrives at a new delay; AEC3 finds it within about half a
        second, and until then leaks enough of the replica's voice for a false
        barge-in (seen on PulseAudio: one false onset 1.6 s into a reply).
        """
        jumps = self._ref.reanchors
        if jumps != self._reanchors_seen:
            self._reanchors_seen = jumps
            if self._warm:
                self.rewarms += 1
                self._reset_warmup(_MIN_REWARM_CHUNKS)

    def _converged(self, mic: np.ndarray, cleaned: np.ndarray, t_ns: int, known: bool) -> bool:
        """Has AEC3 learned the echo path? Until it has, echo leaks for about a second.

        Judged on chunks where the replica was audible within half a second:
        converged once, after at least 1 s of them, the output stays 15 dB below
        the input over the last 0.5 s. Latches, and gives up waiting after 3 s of echo (a user who
        talks through the whole warm-up must still be heard).
        """
        if self._warm:
            return True
        # Either side of t: at stream start device stamps can be off by a few hundred ms.
        recent, _ = self._ref.read(t_ns - _ECHO_SPAN_NS, int(2 * _ECHO_SPAN_NS * SOURCE_RATE / 1e9))
        if float(np.sqrt(np.mean(recent**2))) < _ACTIVE_RMS:
            return True  # nothing played lately: nothing to leak
        self._warmup.append((float(np.mean(mic**2)), float(np.mean(cleaned**2))))
        self._warmup_chunks += 1
        if known and self._warmup_chunks >= self._min_warmup_chunks:
            power_in, power_out = sum(w[0] for w in self._warmup), sum(w[1] for w in self._warmup)
            self._warm = power_out < power_in * _CONVERGED_RATIO
        self._warm = self._warm or self._warmup_chunks >= _MAX_WARMUP_CHUNKS
        self.warmup_ms = self._warmup_chunks * 10
        return self._warm

    def _ref_time(self, mic_t_ns: int) -> int:
        return mic_t_ns - int(self.delay_ms * 1e6) + self.lookahead_ns

    def _cancel(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        rtc = self._rtc
        rev = rtc.AudioFrame(_to_i16(ref).tobytes(), SOURCE_RATE, 1, CHUNK)
        self._apm.process_reverse_stream(rev)
        self._apm.set_stream_delay_ms(int(self.lookahead_ns / 1e6))
        near = rtc.AudioFrame(bytearray(_to_i16(mic).tobytes()), SOURCE_RATE, 1, CHUNK)
        self._apm.process_stream(near)
        if self.track_delay:
            self._remember(mic)
        return np.frombuffer(near.data, dtype=np.int16).astype(np.float32) / _I16

    def _pop(self, n: int) -> np.ndarray:
        parts: list[np.ndarray] = []
        need = n
        while need and self._out:
            head = self._out[0]
            if len(head) <= need:
                parts.append(self._out.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self._out[0] = head[need:]
                need = 0
        self._out_len -= n - need
        if need:
            parts.append(np.zeros(need, dtype=np.float32))
        return np.concatenate(parts)

    # -- delay tracking -------------------------------------------------------------------

    def _remember(self, mic: np.ndarray) -> None:
        """Keep the raw mic; every couple of seconds re-measure where its echo sits.

        The reference is read from the speaker history by timestamps (never
        the possibly-starved chunks AEC3 was fed), so a mic stamped later than
        the speaker has played is measured too, and then fixed.
        """
        self._hist_mic.append(mic.copy())
        self._since_estimate += 1
        due = _ESTIMATE_EVERY_S if self.delay_estimates else _FIRST_ESTIMATE_S
        if self._since_estimate < due * 100 or len(self._hist_mic) < _FIRST_ESTIMATE_S * 100:
            return
        if self._since_estimate < _STEADY_ESTIMATE_EVERY_S * 100 and self._steady():
            return  # looked at only once the shorter interval is up, not on every chunk
        starved = (self.starved_chunks - self._starved_at_estimate) / self._since_estimate
        self._since_estimate, self._starved_at_estimate = 0, self.starved_chunks
        mic_all = np.concatenate(self._hist_mic)
        span = int(_MAX_LAG_S * SOURCE_RATE)
        mic_start_ns = self._in_t_ns + _CHUNK_NS - int(len(mic_all) * 1e9 / SOURCE_RATE)
        ref, _ = self._ref.read(mic_start_ns - int(_MAX_LAG_S * 1e9), len(mic_all) + 2 * span)
        if float(np.sqrt(np.mean(ref**2))) < _ACTIVE_RMS:
            return  # the replica is quiet: nothing to measure
        padded = np.concatenate([np.zeros(span, np.float32), mic_all, np.zeros(span, np.float32)])
        lag_ms, strength = estimate_delay(ref, padded, SOURCE_RATE, max_lag_ms=_MAX_LAG_S * 1000)
        self.delay_estimates.append((lag_ms, strength))
        if strength < _MIN_STRENGTH:
            return  # no clear echo path (muted speaker, headphones, user talking over it)
        fed_lag = lag_ms - self.delay_ms + self.lookahead_ns / 1e6  # the lag AEC3 currently sees
        if starved > 0.1 or not _SAFE_LAG_MS[0] <= fed_lag <= _SAFE_LAG_MS[1]:
            self.delay_ms = lag_ms  # AEC3 now sees exactly the lookahead again
            self._apm = self._new_apm()  # converges faster from scratch than from the old delay
            self._reset_warmup()
            self._hist_mic.clear()

    def _steady(self) -> bool:
        """The last two estimates agree: the same lag (within 2 ms), or no clear echo either time."""
        if len(self.delay_estimates) < 2:
            return False
        (lag_a, strength_a), (lag_b, strength_b) = self.delay_estimates[-2:]
        heard_a, heard_b = strength_a >= _MIN_STRENGTH, strength_b >= _MIN_STRENGTH
        return heard_a == heard_b and (not heard_a or abs(lag_a - lag_b) <= _STEADY_MS)


def _to_i16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * _I16).astype(np.int16)
