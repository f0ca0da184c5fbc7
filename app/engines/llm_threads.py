"""When two decode threads stop paying: llama.cpp's spin barrier on a machine whose other core is taken.

llama.cpp (built without OpenMP) spins at every barrier inside a token, which
is what makes it fast on two free cores (60-80 tok/s for SmolLM2 here) and
what makes it collapse when one of them is busy elsewhere: each barrier then
waits out a scheduler slice, and two threads gave 2.8 tok/s where one gave
30-50 (docs/cpu-plan.md).  A browser or a compile on the user's laptop does
that, and ``nice`` does not help across login sessions (autogroups).  The
guard watches each token's time; two tokens in a row far slower than the
fastest seen drop the rest of the reply, and the next few seconds, to one
thread.  One slow token is not enough: inside the app a lone 70-80 ms token
comes with a phase switch (the first audio starting, the face going to its
full rate), and tripping on it kept 10 s of replies on one thread, ~30 %
slower (measured in the pipeline, 2026-12-05); outside contention is
sustained, so it still trips within two tokens.
"""

from __future__ import annotations

import time

SLOW_FACTOR = 4.0  # a token this many times slower than the fastest two-thread token: the other core is taken
MIN_SLOW_S = 0.04  # never judge tokens faster than this (scheduler noise)
SLOW_RUN = 2  # consecutive slow tokens that make contention (a lone one is a hiccup)
REMEMBER_S = 10.0  # how long a seen contention keeps new replies on one thread before two are tried again


class SpinGuard:
    """Decides the decode thread count token by token; ``fallbacks`` counts the drops to one thread."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self.fastest_s: float | None = None  # the fastest token decoded with two or more threads
        self.fallbacks = 0
        self._slow_run = 0
        self._contended_at = float("-inf")

    def threads_to_start(self, planned: int) -> int:
        """The plan's count, or one while a recent contention is remembered."""
        recent = self._clock() - self._contended_at < REMEMBER_S
        return 1 if planned > 1 and recent else planned

    def slow(self, threads: int, token_s: float) -> bool:
        """Record one token's decode time; True when the reply should go on with one thread."""
        if threads < 2:
            return False
        if self.fastest_s is not None and token_s > max(MIN_SLOW_S, SLOW_FACTOR * self.fastest_s):
            self._slow_run += 1
            if self._slow_run < SLOW_RUN:
                return False
            self._slow_run = 0
            self._contended_at = self._clock()
            self.fallbacks += 1
            return True
        self._slow_run = 0
        self.fastest_s = token_s if self.fastest_s is None else min(self.fastest_s, token_s)
        return False
