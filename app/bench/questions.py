"""The fixed spoken inputs: questions of varied length and topic, and barge-in pairs.

Audio is made deterministically (Piper with its noise turned off, espeak-ng
with fixed voices and rates) in a subprocess, so the bench process's memory
holds only the app's own models.  Files are cached by a hash of text and
voice, so a rerun reuses them and a changed question gets a new file.
Questions avoid commas and second sentences: a pause longer than the
end-of-turn window would split one question into two turns.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.audio import read_wav, write_wav

RATE = 16_000
TRIM_FLOOR = 0.01  # |sample| below this at either end is padding, not voice


@dataclass(frozen=True)
class Question:
    """One spoken input; ``voice`` is ``piper:<length_scale>`` or ``espeak:<voice>:<words per minute>``."""

    id: str
    text: str
    voice: str
    kind: str = "question"  # "question" | "long" (a prompt that gets interrupted) | "interrupter"

    @property
    def filename(self) -> str:
        digest = hashlib.sha1(f"{self.text}|{self.voice}".encode()).hexdigest()[:10]
        return f"{self.id}-{digest}.wav"


QUESTIONS = (
    Question("q01", "What is the capital of France?", "piper:1.0"),
    Question("q02", "How do I make a good cup of tea?", "espeak:en-us+m3:165"),
    Question("q03", "Do you like music?", "piper:0.9"),
    Question("q04", "What should I cook for dinner tonight if I only have eggs and rice?", "espeak:en-us+f2:170"),
    Question("q05", "Why is the sky blue?", "espeak:en-gb+m1:150"),
    Question("q06", "Can you recommend a good book to read on a long train journey?", "piper:1.1"),
    Question("q07", "Hi there.", "espeak:en-us+f4:160"),
    Question("q08", "How far away is the moon from the earth?", "piper:1.0"),
    Question("q09", "What is the best way to learn a new language as an adult?", "espeak:en-us+m7:175"),
    Question("q10", "Tell me something interesting about octopuses.", "piper:0.95"),
    Question(
        "q11",
        "I have been feeling tired lately and I wonder what simple habits could help me sleep better at night?",
        "espeak:en-us+m3:180",
    ),
    Question("q12", "What do you like to do on a rainy weekend?", "piper:1.05"),
)

BARGE_INS = (
    (
        Question("b1", "Tell me a long story about a brave knight and a dragon.", "piper:1.0", "long"),
        Question("b1i", "Sorry but what time is it right now?", "espeak:en-us+f2:170", "interrupter"),
    ),
    (
        Question("b2", "Describe your perfect holiday in as much detail as you can.", "espeak:en-us+m3:165", "long"),
        Question("b2i", "Hold on what about the mountains?", "piper:1.0", "interrupter"),
    ),
    (
        Question("b3", "Explain how a car engine works from start to finish.", "piper:1.05", "long"),
        Question("b3i", "Wait I meant electric cars.", "espeak:en-gb+m1:160", "interrupter"),
    ),
)

# Held out from the tuning above: other voices (accents, speeds, a noisy room), asked one after another
# in one growing conversation with every reply played to its end (the bench's "long session" rows).
_OTHER_VOICES = (
    "espeak:en-gb-scotland+f3:150",
    "piper:1.25",
    "espeak:en-029+m2:170|noise:15",
    "espeak:en-us-nyc+f1:185",
    "piper:0.85|noise:20",
    "espeak:en-gb-x-rp+m4:140",
)
_HELD_OUT_TEXTS = (
    "Good morning how are you today?",
    "What is a good name for a small grey cat?",
    "How many legs does a spider have?",
    "Which planet is closest to the sun?",
    "What can I do to feel less stressed at work?",
    "Is it better to walk or cycle to the office?",
    "What is the tallest mountain in the world?",
    "How do bees make honey?",
    "Can you suggest a quick lunch with tomatoes and bread?",
    "What language do people speak in Brazil?",
    "Why do leaves change colour in autumn?",
    "What time of year is best to visit Japan?",
    "How long should I boil an egg?",
    "What is your favourite season and why?",
    "How can I remember names better when I meet people?",
    "What is the capital city of Canada?",
    "Do you think robots will ever dream?",
    "What should I pack for a weekend by the sea?",
    "How does a rainbow form?",
    "Thanks for the chat what should we talk about next time?",
    "How many minutes are there in a day?",
    "What is a simple way to start running?",
)
HELD_OUT = tuple(
    Question(f"h{i + 1:02d}", text, _OTHER_VOICES[i % len(_OTHER_VOICES)]) for i, text in enumerate(_HELD_OUT_TEXTS)
)


def play_order(n_questions: int, n_barge_ins: int) -> list[Question]:
    """The first ``n_questions`` questions with barge-in pairs spread evenly among them."""
    questions = list(QUESTIONS[:n_questions])
    pairs = list(BARGE_INS[:n_barge_ins])
    order: list[Question] = []
    slots = {round((k + 1) * len(questions) / (len(pairs) + 1)): pair for k, pair in enumerate(pairs)}
    for i, q in enumerate(questions, 1):
        order.append(q)
        if i in slots:
            order.extend(slots.pop(i))
    for pair in slots.values():
        order.extend(pair)
    return order


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length (case and punctuation ignored)."""
    ref, hyp = _words(reference), _words(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(ref))


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def trim(audio: np.ndarray, floor: float = TRIM_FLOOR) -> np.ndarray:
    """Cut padding so the file's end is the true end of voice."""
    loud = np.flatnonzero(np.abs(audio) > floor)
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio[:0]


def ensure_audio(questions: list[Question], directory: Path) -> dict[str, Path]:
    """Make the WAVs that are not cached yet (in a subprocess); returns id -> 16 kHz WAV path."""
    directory.mkdir(parents=True, exist_ok=True)
    missing = [q.id for q in questions if not (directory / q.filename).is_file()]
    if missing and getattr(sys, "frozen", False):  # a PyInstaller build cannot run `-m`: make them here
        generate(missing, directory)
    elif missing:
        cmd = [sys.executable, "-m", "app.bench.questions", str(directory), *missing]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"Generating the spoken questions failed:\n{done.stderr.strip()[-2000:]}")
    return {q.id: directory / q.filename for q in questions}


def load_audio(path: Path) -> np.ndarray:
    return read_wav(path, RATE)[0]


# --- the generator (runs as `python -m app.bench.questions DIR ID...`) --------------


def _espeak(text: str, voice: str, wpm: str, out: Path) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed; install it (`apt-get install -y espeak-ng`) and rerun.")
    subprocess.run([exe, "-w", str(out), "-v", voice, "-s", wpm, text], check=True, timeout=60)
    return read_wav(out, RATE)[0]


class _Piper:
    """The bundled Piper voice with noise scales at zero: same text, same samples."""

    def __init__(self) -> None:
        from piper import PiperVoice

        from app.model_registry import resolve

        self.voice = PiperVoice.load(str(resolve("voice")))

    def say(self, text: str, length_scale: float) -> np.ndarray:
        from piper import SynthesisConfig

        cfg = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
        parts = [np.asarray(c.audio_float_array, dtype=np.float32) for c in self.voice.synthesize(text, cfg)]
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        from app.core.audio import resample

        return resample(audio, self.voice.config.sample_rate, RATE)


def _add_noise(audio: np.ndarray, snr_db: float, seed: str) -> np.ndarray:
    """White noise at ``snr_db`` below the voice's power, the same noise for the same input."""
    rng = np.random.default_rng(int(hashlib.sha1(seed.encode()).hexdigest()[:8], 16))
    power = float(np.mean(audio.astype(np.float64) ** 2)) or 1e-6
    noise = rng.standard_normal(len(audio)) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(audio + noise, -1.0, 1.0).astype(np.float32)


def generate(ids: list[str], directory: Path) -> None:
    from app.bench.turn_set import clips

    catalogue = {q.id: q for q in (*QUESTIONS, *HELD_OUT, *clips())} | {q.id: q for pair in BARGE_INS for q in pair}
    directory.mkdir(parents=True, exist_ok=True)
    piper: _Piper | None = None
    for qid in ids:
        q = catalogue[qid]
        voice, _, noise = q.voice.partition("|noise:")
        engine, *params = voice.split(":")
        if engine == "piper":
            piper = piper or _Piper()
            audio = piper.say(q.text, float(params[0]))
        else:
            audio = _espeak(q.text, params[0], params[1], directory / f"{q.id}.espeak.wav")
            (directory / f"{q.id}.espeak.wav").unlink()
        audio = trim(audio)
        if noise:  # noise over the whole file, with a little room tone before and after the voice
            pad = np.zeros(RATE // 5, dtype=np.float32)
            audio = _add_noise(np.concatenate([pad, audio, pad]), float(noise), q.filename)
        write_wav(directory / q.filename, audio, RATE)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the bench's spoken questions as 16 kHz WAVs.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("ids", nargs="+")
    args = parser.parse_args()
    generate(args.ids, args.directory)


if __name__ == "__main__":
    main()
