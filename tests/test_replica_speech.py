"""The replica speaking with the real Piper voice: lip motion, bilabials, A/V sync, `doppel render`.

Everything is measured on rendered pixels and on the audio, never on the
animation parameters. The voice is loaded once for the module.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from app.core.engines import SpeechChunk
from app.replica import Replica

pytestmark = pytest.mark.slow

T0 = 10**12
FPS = 25
FRAME_NS = 1_000_000_000 // FPS
LEAD_S = 0.5
TEN_SECONDS = (
    "Hello mama, I am your replica. I can talk with you about anything you like, "
    "for example the weather, a good book, or the best way to bake bread. "
    "Do you see how my lips move when I speak?"
)


@pytest.fixture(scope="module")
def voice():
    from app.engines.tts_piper import PiperTts
    from app.model_registry import resolve

    return PiperTts(resolve("voice"), deterministic=True)  # same audio every run: thresholds stay meaningful


@dataclass
class Utterance:
    chunks: list[SpeechChunk]
    starts_ns: list[int]
    audio: np.ndarray  # the whole timeline as heard, lead-in silence included
    sample_rate: int
    frames: list[np.ndarray]  # lip-box crops at the replica fps from T0
    idle: list[np.ndarray]  # the same crops from an idle twin (same seed, no speech)
    lip_box: tuple[int, int, int, int]


def lip_box(rep: Replica) -> tuple[int, int, int, int]:
    p = rep.landmarks
    return int(p[48, 0]) - 4, int(p[50:53, 1].min()) - 4, int(p[54, 0]) + 5, int(p[57, 1] + 0.3 * rep.face.iod)


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def inner_mouth(patch: np.ndarray) -> int:
    """Mouth opening from pixels: the dark inner-mouth area."""
    return int((cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY) < 70).sum())


def speak(voice, text: str, seed: int = 7, tail_s: float = 0.6) -> Utterance:
    chunks = list(voice.synthesize(text))
    sr = chunks[0].sample_rate
    rep, twin = Replica.from_assets(seed=seed), Replica.from_assets(seed=seed)
    box = lip_box(rep)
    t = T0 + round(LEAD_S * 1e9)
    starts = []
    for chunk in chunks:
        rep.push_audio(chunk, t)
        starts.append(t)
        t += round(len(chunk.audio) / sr * 1e9)
    audio = np.concatenate([np.zeros(round(LEAD_S * sr), np.float32), *(c.audio for c in chunks)])
    n = int((len(audio) / sr + tail_s) * FPS)
    frames = [crop(rep.render(T0 + i * FRAME_NS).image, box) for i in range(n)]
    idle = [crop(twin.render(T0 + i * FRAME_NS).image, box) for i in range(n)]
    return Utterance(chunks, starts, audio, sr, frames, idle, box)


@pytest.fixture(scope="module")
def utterance(voice) -> Utterance:
    return speak(voice, TEN_SECONDS)


def rms_per_frame(utt: Utterance) -> np.ndarray:
    """Loudness heard around each frame's instant (a 40 ms window centred on it)."""
    hop = utt.sample_rate / FPS
    padded = np.concatenate([utt.audio, np.zeros(utt.sample_rate, np.float32)])
    return np.array(
        [
            np.sqrt(np.mean(padded[max(round((i - 0.5) * hop), 0) : round((i + 0.5) * hop)] ** 2))
            for i in range(len(utt.frames))
        ]
    )


def test_mouth_moves_while_speech_plays_and_rests_in_silence(utterance: Utterance) -> None:
    sr = utterance.sample_rate
    speech_end = len(utterance.audio) / sr
    pairs = zip(utterance.frames, utterance.idle, strict=True)
    diff = np.array([(np.abs(f.astype(int) - g.astype(int)).sum(axis=2) > 60).sum() for f, g in pairs])
    opening = np.array([inner_mouth(f) for f in utterance.frames])
    times = np.arange(len(diff)) / FPS
    silent = (times < LEAD_S - 0.05) | (times > speech_end + 0.1)
    talking = (times > LEAD_S + 0.2) & (times < speech_end - 0.2)
    assert silent.sum() >= 20 and talking.sum() >= 200
    # Silence: the mouth is exactly the idle mouth (head sway and blinks aside).
    assert diff[silent].max() == 0
    assert np.ptp(opening[silent]) <= 15  # only the resampled corner shadows flicker
    # Speech: it opens and closes, a lot and often.
    assert np.percentile(diff[talking], 90) > 300
    assert np.percentile(opening[talking], 90) > opening[silent].max() + 150
    assert (np.abs(np.diff(opening[talking])) > 40).mean() > 0.25


def test_lips_close_on_the_m_of_mama(voice) -> None:
    utt = speak(voice, "Mama, mama!", tail_s=0.2)
    rep, twin = Replica.from_assets(seed=7), Replica.from_assets(seed=7)
    for chunk, start in zip(utt.chunks, utt.starts_ns, strict=True):  # a streamed voice's pieces join up
        rep.push_audio(chunk, start)
    box = utt.lip_box
    timed = [
        (p.phoneme, start + round((p.start + p.length / 2) / chunk.sample_rate * 1e9))
        for chunk, start in zip(utt.chunks, utt.starts_ns, strict=True)
        for p in chunk.phonemes
    ]

    def opening_at(symbol: str) -> list[int]:
        return [
            inner_mouth(crop(rep.render(t).image, box)) - inner_mouth(crop(twin.render(t).image, box))
            for phoneme, t in timed
            if phoneme == symbol
        ]

    m_frames, a_frames = opening_at("m"), opening_at("ɑ")  # the stressed vowel of ma-ma
    assert len(m_frames) >= 4 and len(a_frames) >= 2, [phoneme for phoneme, _ in timed]
    assert max(m_frames) <= 15, f"lips not closed on m: inner-mouth pixels {m_frames}"
    assert min(a_frames) > 60, f"mouth not open on the vowels: {a_frames}"


def test_lips_are_in_sync_with_the_audio(utterance: Utterance) -> None:
    opening = np.array([inner_mouth(f) for f in utterance.frames], float)
    rms = rms_per_frame(utterance)
    lags = np.arange(-5, 6)  # +-200 ms
    corr = []
    for lag in lags:
        a, b = (opening[lag:], rms[: len(rms) - lag]) if lag >= 0 else (opening[:lag], rms[-lag:])
        corr.append(np.corrcoef(a, b)[0, 1])
    corr = np.array(corr)
    k = int(np.argmax(corr))
    offset_frames = float(lags[k])
    if 0 < k < len(lags) - 1:  # parabolic peak for sub-frame precision
        c0, c1, c2 = corr[k - 1], corr[k], corr[k + 1]
        offset_frames += 0.5 * (c0 - c2) / (c0 - 2 * c1 + c2)
    offset_ms = 1000.0 * offset_frames / FPS  # positive: the mouth lags the sound
    print(f"A/V offset {offset_ms:+.1f} ms, peak correlation {corr[k]:.3f}")
    assert abs(offset_ms) <= 40.0
    assert corr[k] >= 0.7


def test_clear_buffer_mid_sentence_returns_to_idle_within_one_frame(voice, utterance: Utterance) -> None:
    rep, twin = Replica.from_assets(seed=7), Replica.from_assets(seed=7)
    for chunk, start in zip(utterance.chunks, utterance.starts_ns, strict=True):
        rep.push_audio(chunk, start)
    opening = [inner_mouth(f) for f in utterance.frames]
    i = int(np.argmax(opening))  # the widest-open frame
    t = T0 + i * FRAME_NS
    assert rep.render(t).speaking
    rep.clear_buffer()
    nxt = rep.render(t + FRAME_NS)
    assert not nxt.speaking
    assert np.array_equal(nxt.image, twin.render(t + FRAME_NS).image)


def test_doppel_render_writes_an_mp4_with_the_speech(tmp_path) -> None:
    import imageio_ffmpeg

    from app.replica import cli_render

    parser = argparse.ArgumentParser(prog="doppel")
    cli_render.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "clip.mp4"
    args = parser.parse_args(["render", "--text", "Hello there.", "--out", str(out)])
    assert args.func is cli_render.run
    assert args.func(args) == 0
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True
    ).stderr
    assert re.search(r"Video: h264.*512x512.*30 fps", probe), probe
    assert re.search(r"Audio: aac.*22050 Hz", probe), probe
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", probe).groups()
    assert 1.2 < int(h) * 3600 + int(m) * 60 + float(s) < 5.0


def test_doppel_render_explains_a_photo_without_a_face(tmp_path, capsys) -> None:
    from app.replica import cli_render

    photo = tmp_path / "wall.png"
    cv2.imwrite(str(photo), np.full((300, 400, 3), 200, np.uint8))
    parser = argparse.ArgumentParser(prog="doppel")
    cli_render.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["render", "--text", "Hi.", "--face", str(photo), "--out", str(tmp_path / "x.mp4")])
    assert args.func(args) == 2
    assert "No face" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
