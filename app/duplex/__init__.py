"""Talking and listening at once: echo cancellation, a camera barge-in gate, or half duplex.

``make_duplex`` is the one entry point the composition root needs: it picks
WebRTC echo cancellation when the binding loads and the sink exposes its
playout, and falls back to half duplex (mic ducked while the replica speaks)
otherwise, with a sentence the UI can show saying which one is in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from app.core.audio_io import AudioSink
from app.duplex.aec import EchoCanceller, webrtc_available
from app.duplex.gate import GateDecision, MouthGate, MouthGateSettings

__all__ = [
    "HALF_DUPLEX_NO_AEC",
    "Duplex",
    "DuplexOptions",
    "EchoCanceller",
    "GateDecision",
    "MouthGate",
    "MouthGateSettings",
    "make_duplex",
    "webrtc_available",
]


@dataclass(frozen=True)
class DuplexOptions:
    """User-facing switches (settings page); defaults are what a laptop with speakers needs."""

    echo_cancellation: bool = True
    noise_suppression: bool = False  # WebRTC NS after the canceller: measured no help to Silero (docs/duplex.md)
    mouth_gate: bool = True  # with a camera and a visible face, barge-in needs a moving mouth
    headphones: bool = False  # no echo path at all: listen at full duplex without a canceller


class Duplex(NamedTuple):
    """What the conversation is built with; unpacks as (mic_filter, gate, half_duplex, description)."""

    mic_filter: EchoCanceller | None
    barge_in_gate: MouthGate | None
    half_duplex: bool
    description: str

    def conversation_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Conversation(...)``."""
        return {"mic_filter": self.mic_filter, "barge_in_gate": self.barge_in_gate, "half_duplex": self.half_duplex}


HALF_DUPLEX_NO_AEC = "Half duplex: no echo canceller installed — the replica can't be interrupted by voice"


def make_duplex(sink: AudioSink | None, options: DuplexOptions | None = None) -> Duplex:
    """Choose how the microphone coexists with the speaker; attaches the canceller to ``sink``.

    ``sink`` must play through a ``PlayoutBuffer`` (``sink.buffer``) for the
    canceller to get its reference; any other sink gets half duplex. With no
    sink there is nothing to cancel and the mic stays fully open.
    """
    opts = options or DuplexOptions()
    gate = MouthGate() if opts.mouth_gate else None
    camera = "; barge-in checks the camera for a moving mouth" if gate else ""
    if sink is None:
        return Duplex(None, gate, False, "Full duplex: nothing is played aloud")
    if opts.headphones:
        return Duplex(None, gate, False, "Full duplex: headphones, no echo to cancel" + camera)
    if not opts.echo_cancellation:
        return Duplex(
            None, None, True, "Half duplex: echo cancellation is off — the replica can't be interrupted by voice"
        )
    if not webrtc_available():
        return Duplex(None, None, True, HALF_DUPLEX_NO_AEC)
    buffer = getattr(sink, "buffer", None)
    taps = getattr(buffer, "taps", None)
    if taps is None:
        return Duplex(None, None, True, f"Half duplex: the {sink.name} output gives no echo reference")
    aec = EchoCanceller(sink.sample_rate, noise_suppression=opts.noise_suppression)
    taps.append(aec.tap)
    ns = " + noise suppression" if opts.noise_suppression else ""
    return Duplex(aec, gate, False, f"Echo cancellation: WebRTC APM{ns}{camera}")
