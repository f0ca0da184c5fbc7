"""`doppel bench --asr-compare`: both speech recognisers on the same inputs, interleaved.

The inputs are the bench's spoken questions and variants a new user brings:
noise at 10-20 dB SNR, faster and slower speech, other voices (espeak-ng
accents, Piper at other paces) and short or non-speech inputs (backchannels,
fillers, noise).  Each input goes to every engine in turn, the order flipped
from one input to the next, so a change in the machine's load hits all alike.
Reported: compute time per input (what the reply waits for), corpus word
error rate per group, and what the turn filter (``app.core.fillers``) made
of each transcript.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from app.bench.questions import QUESTIONS, RATE, _espeak, _Piper, ensure_audio, load_audio, trim, word_error_rate
from app.core.audio import read_wav, write_wav
from app.core.engines import AsrEngine
from app.core.fillers import judge, words_of

LEAD_S, TAIL_S = 0.25, 0.064  # what the listener hands over: pre-roll before the voice, the first silent frames
ESPEAK_VOICES = ("en-gb-scotland:150", "en-gb-x-rp:165", "en-029:160", "en-us+f3:175", "en-gb-x-gbclan:155")
SHORT_TEXTS = ("Mm-hmm.", "Yeah.", "Okay.", "Uh.", "Hmm.", "No.", "Yes please.", "Sure.", "Right.", "Uh-huh.")
SHORT_VOICES = ("piper:1.0", "espeak:en-us+m3:160", "espeak:en-gb+f2:150")
# The words a question cannot be understood without: heard with all of them, and as a turn, it is "understood".
KEY_WORDS = {
    "q01": ("capital", "france"),
    "q02": ("cup", "tea"),
    "q03": ("music",),
    "q04": ("dinner", "eggs", "rice"),
    "q05": ("sky", "blue"),
    "q06": ("book", "train", "journey"),
    "q07": ("hi", "there"),
    "q08": ("moon", "earth"),
    "q09": ("learn", "language", "adult"),
    "q10": ("octopus",),
    "q11": ("tired", "sleep"),
    "q12": ("rainy", "weekend"),
}


def understood(question_id: str, text: str) -> bool:
    """Every key word of the question is in the transcript (as a word start: "octopuses" has "octopus")."""
    words = words_of(text)
    return all(any(w.startswith(k) for w in words) for k in KEY_WORDS[question_id])


@dataclass(frozen=True)
class Sample:
    id: str
    group: str  # clean | noisy | tempo | voices | short | noise
    text: str  # what was said ("" for noise)
    path: str
    wants_turn: bool = True  # False: a filler or noise, which should get no reply


@dataclass
class Result:
    sample: str
    group: str
    engine: str
    compute_ms: float
    text: str
    wer: float
    ref_words: int
    is_turn: bool
    reason: str
    mean_logprob: float | None
    understood: bool | None = None  # questions only: every key word heard, and taken as a turn


def _noise(n: int, seed: int, pink: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n).astype(np.float32)
    if not pink:
        return white
    spectrum = np.fft.rfft(white)
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))  # 1/f power: closer to room and fan noise
    return np.fft.irfft(spectrum, n).astype(np.float32)


def add_noise(audio: np.ndarray, snr_db: float, seed: int, pink: bool = False) -> np.ndarray:
    """``audio`` plus noise at ``snr_db`` relative to the speech's power."""
    noise = _noise(len(audio), seed, pink)
    power = float(np.mean(audio**2)) / (10 ** (snr_db / 10))
    return (audio + noise * np.sqrt(power / float(np.mean(noise**2)))).astype(np.float32)


def _tempo(src: Path, dst: Path, factor: float) -> np.ndarray:
    subprocess.run(["sox", str(src), str(dst), "tempo", "-s", f"{factor}"], check=True, timeout=60)
    return read_wav(dst, RATE)[0]


def make_inputs(directory: Path, quick: bool = False) -> list[Sample]:
    """Write (or reuse) every input as a 16 kHz WAV in ``directory``; the same files each run."""
    directory.mkdir(parents=True, exist_ok=True)
    questions = list(QUESTIONS[:4] if quick else QUESTIONS)
    clean = ensure_audio(questions, directory / "questions")
    samples: list[Sample] = []
    voices: list[_Piper] = []

    def piper(text: str, scale: float) -> np.ndarray:
        if not voices:
            voices.append(_Piper())  # loaded only when a file is missing
        return trim(voices[0].say(text, scale))

    def make(sid: str, group: str, text: str, build: Callable[[Path], np.ndarray], wants: bool = True) -> None:
        path = directory / f"{sid}.wav"
        if not path.is_file():
            write_wav(path, build(path), RATE)
        samples.append(Sample(sid, group, text, str(path), wants))

    for i, q in enumerate(questions):
        samples.append(Sample(q.id, "clean", q.text, str(clean[q.id])))
        audio = load_audio(clean[q.id])
        make(
            f"{q.id}-noisy", "noisy", q.text, lambda _p, a=audio, i=i: add_noise(a, (10, 15, 20)[i % 3], i, i % 2 == 0)
        )
        factor = 1.3 if i % 2 == 0 else 0.8
        make(f"{q.id}-tempo", "tempo", q.text, lambda p, src=clean[q.id], f=factor: _tempo(src, p, f))
        voice, wpm = ESPEAK_VOICES[i % len(ESPEAK_VOICES)].split(":")
        make(f"{q.id}-espeak", "voices", q.text, lambda p, t=q.text, v=voice, w=wpm: trim(_espeak(t, v, w, p)))
        if i % 2 == 0:
            scale = 0.8 if i % 4 == 0 else 1.3
            make(f"{q.id}-piper{scale}", "voices", q.text, lambda _p, t=q.text, s=scale: piper(t, s))
    for i, text in enumerate(SHORT_TEXTS[:4] if quick else SHORT_TEXTS):
        for j, spec in enumerate(SHORT_VOICES):
            engine, *params = spec.split(":")
            wants = judge(text).is_turn
            if engine == "piper":
                make(f"s{i:02d}-{j}", "short", text, lambda _p, t=text: piper(t, 1.0), wants)
            else:
                make(
                    f"s{i:02d}-{j}",
                    "short",
                    text,
                    lambda p, t=text, v=params[0], w=params[1]: trim(_espeak(t, v, w, p)),
                    wants,
                )
    make("n-hiss", "noise", "", lambda _p: 0.01 * _noise(int(0.6 * RATE), 1, False), False)
    make("n-hum", "noise", "", lambda _p: 0.05 * _noise(int(0.8 * RATE), 2, True), False)
    burst = _noise(int(0.3 * RATE), 3, True) * np.exp(-np.linspace(0, 6, int(0.3 * RATE))).astype(np.float32)
    make("n-cough", "noise", "", lambda _p: (0.3 * burst / np.abs(burst).max()).astype(np.float32), False)
    return samples


def padded(audio: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), audio, np.zeros(int(TAIL_S * RATE), np.float32)])


def compare(engines: dict[str, AsrEngine], samples: list[Sample], rounds: int = 1, progress=print) -> list[Result]:
    """Every sample through every engine, the engine order alternating from sample to sample."""
    names = list(engines)
    results: list[Result] = []
    for r in range(rounds):
        for k, sample in enumerate(samples):
            audio = padded(load_audio(Path(sample.path)))
            order = names if (k + r) % 2 == 0 else names[::-1]
            for name in order:
                started = time.perf_counter()
                t = engines[name].transcribe(audio)
                ms = (time.perf_counter() - started) * 1000
                verdict = judge(t.text, t.doubtful)
                ref = len(words_of(sample.text))
                qid = sample.id.split("-")[0]
                wer = word_error_rate(sample.text, t.text) if ref else float(len(words_of(t.text)))
                qid = sample.id.split("-")[0]
                results.append(
                    Result(
                        sample.id,
                        sample.group,
                        name,
                        ms,
                        t.text,
                        wer,
                        ref,
                        verdict.is_turn,
                        verdict.reason,
                        t.mean_logprob,
                        understood(qid, t.text) and verdict.is_turn if qid in KEY_WORDS else None,
                    )
                )
        progress(f"round {r + 1}/{rounds} done")
    return results


def summarise(results: list[Result], samples: list[Sample]) -> dict:
    """Per engine and group: compute p50/p90/max, corpus WER, wrong turn verdicts."""
    wants = {s.id: s.wants_turn for s in samples}
    out: dict[str, dict] = {}
    for engine in dict.fromkeys(r.engine for r in results):
        rows = [r for r in results if r.engine == engine]
        groups: dict[str, dict] = {}
        for group in [*dict.fromkeys(r.group for r in rows), "all"]:
            sel = [r for r in rows if group in ("all", r.group)]
            ms = np.array([r.compute_ms for r in sel])
            ref = sum(r.ref_words for r in sel if r.ref_words)
            edits = sum(r.wer * r.ref_words for r in sel if r.ref_words)
            groups[group] = {
                "n": len(sel),
                "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p90_ms": round(float(np.percentile(ms, 90)), 1),
                "max_ms": round(float(ms.max()), 1),
                "wer": round(edits / ref, 4) if ref else None,
                "dropped_turns": sum(1 for r in sel if wants[r.sample] and not r.is_turn),
                "answered_non_turns": sum(1 for r in sel if not wants[r.sample] and r.is_turn),
                "understood": sum(1 for r in sel if r.understood),
                "questions": sum(1 for r in sel if r.understood is not None),
            }
        out[engine] = groups
    return out


def markdown(summary: dict, header: str) -> str:
    lines = [
        header,
        "",
        "| engine | group | n | p50 ms | p90 ms | max ms | WER | questions understood | real turns dropped "
        "| fillers/noise answered |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for engine, groups in summary.items():
        for group, g in groups.items():
            wer = f"{100 * g['wer']:.1f} %" if g["wer"] is not None else "–"
            heard = f"{g['understood']}/{g['questions']}" if g["questions"] else "–"
            lines.append(
                f"| {engine} | {group} | {g['n']} | {g['p50_ms']:.0f} | {g['p90_ms']:.0f} | {g['max_ms']:.0f} | {wer} "
                f"| {heard} | {g['dropped_turns']} | {g['answered_non_turns']} |"
            )
    return "\n".join(lines) + "\n"


def run_cli(config, out: Path, quick: bool) -> int:  # config: app.config.Config
    """Load both engines, compare them on every input, write asr.json and asr.md to ``out``."""
    import os
    from dataclasses import replace

    from app.compose import load_asr

    engines = {name: load_asr(replace(config, asr_engine=name)) for name in ("moonshine", "whisper")}
    samples = make_inputs(out / "asr-inputs", quick)
    print(f"{len(samples)} inputs, {len(engines)} engines", flush=True)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    results = compare(engines, samples)
    summary = summarise(results, samples)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = f"ASR compare, {stamp}, load before {load}, after {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
    (out / "asr.json").write_text(
        json.dumps({"summary": summary, "results": [asdict(r) for r in results]}, indent=1), encoding="utf-8"
    )
    (out / "asr.md").write_text(markdown(summary, header), encoding="utf-8")
    print(markdown(summary, header))
    return 0
