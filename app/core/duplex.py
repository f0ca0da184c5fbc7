"""Hooks that let the replica talk and listen at once without hearing itself.

The conversation runs every microphone frame through a ``MicFilter`` (echo
cancellation against our own playout) and asks a ``BargeInGate`` before it
lets speech onset cut the replica off (e.g. "is the user's mouth moving?").
With no canceller at all, ``half_duplex`` ducks the microphone while the
replica is audible.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class MicFilter(Protocol):
    def process(self, frame: np.ndarray, t_ns: int) -> np.ndarray:
        """A cleaned copy of one 16 kHz microphone frame captured at ``t_ns``."""
        ...


class BargeInGate(Protocol):
    def accept(self, onset_ns: int) -> bool:
        """True if speech that began at ``onset_ns`` is really the user interrupting."""
        ...
