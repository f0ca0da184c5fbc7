"""Measure the duplex path offline: ERLE, false barge-ins and missed barge-ins per echo level.

``python -m app.duplex.bench`` synthesizes a ~30 s reply and a question with
the real Piper voice, plays the reply through simulated rooms into the mic,
and runs the real Silero VAD on the raw and on the echo-cancelled signal.
Prints markdown tables (the numbers in docs/duplex.md come from here).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from app.core.audio_io import SOURCE_RATE
from app.core.vad import TurnDetectorSettings
from app.duplex.aec import EchoCanceller
from app.duplex.room import Recording, Room, drive, erle_db, record, vad_onsets

REPLY = (
    "Once upon a time, in a kingdom by the sea, there lived a brave knight named Arthur.",
    "Every morning he rode his grey horse along the cliffs, watching the ships sail home.",
    "One day a dragon appeared over the hills, breathing smoke and fire across the fields.",
    "The villagers were afraid, so they gathered in the old stone church and prayed for help.",
    "Arthur sharpened his sword, packed some bread and cheese, and set off toward the mountains.",
    "After three days he found the dragon sleeping in a cave full of gold and silver coins.",
    "Instead of fighting, he sat down quietly and waited for the great beast to wake up.",
)
QUESTION = "Sorry, but what time is it right now?"
GAINS = (0.1, 0.2, 0.3, 0.5)
POSITIONS_S = (3.1, 7.3, 11.0, 15.0, 18.6, 22.1, 26.0)
LEAD_MS = 20.0
RT60_MS = [300.0]  # set from --rt60
NOISE_SUPPRESSION = [False]  # set from --noise-suppression


def cancelled(rec: Recording, rate: int, **kw) -> tuple[EchoCanceller, list[tuple[np.ndarray, int]], float]:
    aec = EchoCanceller(rate, noise_suppression=NOISE_SUPPRESSION[0], **kw)
    start = time.perf_counter()
    frames = [(aec.process(f, t), t) for f, t in drive(rec, rate, [aec.tap], speaker_lead_ms=LEAD_MS)]
    return aec, frames, time.perf_counter() - start


def echo_table(reply: np.ndarray, rate: int, user_rms: float, settings: TurnDetectorSettings) -> None:
    print(
        "| echo gain | echo/user | false onsets, raw mic | false onsets, AEC | ERLE | ERLE after 2 s | ceiling | x RT |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for gain in GAINS:
        rec = record(reply, rate, Room(gain=gain, rt60_ms=RT60_MS[0]))
        raw = vad_onsets(drive(rec, rate, []), settings)
        _, frames, spent = cancelled(rec, rate)
        out = np.concatenate([f for f, _ in frames])[512:]
        mic = rec.mic[: len(out)]
        ratio = 20 * np.log10(float(np.sqrt(np.mean(rec.echo[: len(reply) * SOURCE_RATE // rate] ** 2))) / user_rms)
        conv = 2 * SOURCE_RATE
        speed = len(mic) / SOURCE_RATE / spent
        ceiling = erle_db(mic, mic - rec.echo[: len(mic)])  # the mic noise cannot be cancelled
        print(
            f"| {gain} | {ratio:+.1f} dB | {len(raw)} | {len(vad_onsets(frames, settings))} | "
            f"{erle_db(mic, out):.1f} dB | {erle_db(mic[conv:], out[conv:]):.1f} dB | {ceiling:.1f} dB | {speed:.0f} |"
        )


def barge_in_table(reply: np.ndarray, rate: int, question: np.ndarray, settings: TurnDetectorSettings) -> None:
    print("\n| echo gain | " + " | ".join(f"question at {p} s" for p in POSITIONS_S) + " |")
    print("|---|" + "---|" * len(POSITIONS_S))
    for gain in GAINS:
        cells = []
        for at in POSITIONS_S:
            rec = record(reply, rate, Room(gain=gain, rt60_ms=RT60_MS[0]), [(at, question)])
            _, frames, _ = cancelled(rec, rate)
            onsets = [(t - rec.t0_ns) / 1e9 - at for t in vad_onsets(frames, settings)]
            early = [o for o in onsets if o < -0.05]
            late = [o for o in onsets if o >= -0.05]
            cell = f"{late[0] * 1000:.0f} ms" if late and late[0] < len(question) / SOURCE_RATE else "missed"
            cells.append(cell + (f" (+{len(early)} false)" if early else ""))
        print(f"| {gain} | " + " | ".join(cells) + " |")


def delay_table(reply: np.ndarray, rate: int) -> None:
    print("\n| mic stamps off by | true echo delay | measured | ERLE 0-3 s | ERLE after 5 s |")
    print("|---|---|---|---|---|")
    room = Room(gain=0.2, rt60_ms=RT60_MS[0])
    for error_ms in (-60.0, 0.0, 120.0, 300.0):
        rec = record(reply[: 14 * rate], rate, room)
        aec = EchoCanceller(rate, noise_suppression=NOISE_SUPPRESSION[0])
        frames = [
            aec.process(f, t) for f, t in drive(rec, rate, [aec.tap], stamp_error_ms=error_ms, speaker_lead_ms=LEAD_MS)
        ]
        out = np.concatenate(frames)[512:]
        mic = rec.mic[: len(out)]
        early, late = slice(0, 3 * SOURCE_RATE), slice(5 * SOURCE_RATE, len(out))
        measured = aec.delay_estimates[-1][0] if aec.delay_estimates else float("nan")
        print(
            f"| {error_ms:+.0f} ms | {room.delay_ms + error_ms:.0f} ms | {measured:.0f} ms | "
            f"{erle_db(mic[early], out[early]):.1f} dB | {erle_db(mic[late], out[late]):.1f} dB |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-barge-in", action="store_true", help="only ERLE and delay tables (fast)")
    parser.add_argument("--rt60", type=float, default=300.0, help="reverb decay time of the simulated room, ms")
    parser.add_argument("--noise-suppression", action="store_true", help="WebRTC NS after the canceller")
    args = parser.parse_args(argv)
    RT60_MS[0] = args.rt60
    NOISE_SUPPRESSION[0] = args.noise_suppression
    from app.compose import load_tts
    from app.config import Config
    from app.core.audio import resample

    config = Config()
    tts = load_tts(config)
    reply = np.concatenate([c.audio for text in REPLY for c in tts.synthesize(text)])
    question = resample(np.concatenate([c.audio for c in tts.synthesize(QUESTION)]), tts.sample_rate, SOURCE_RATE)
    settings = TurnDetectorSettings(silence_ms=config.silence_ms, min_speech_ms=config.min_speech_ms)
    print(f"reply {len(reply) / tts.sample_rate:.1f} s, question {len(question) / SOURCE_RATE:.1f} s\n")
    echo_table(reply, tts.sample_rate, float(np.sqrt(np.mean(question**2))), settings)
    if not args.skip_barge_in:
        barge_in_table(reply, tts.sample_rate, question, settings)
    delay_table(reply, tts.sample_rate)


if __name__ == "__main__":
    main()
