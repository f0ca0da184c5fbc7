"""Which cue tells a finished turn from a hesitation?  Measured offline on the turn-taking set.

For every complete question and every hesitation's opening, what the listener
would have at the first pause: the recogniser's transcript (text cue) and the
audio so far (Smart Turn).  A cue is good when it calls the openings unfinished
and the complete questions (and the hesitations' full text) finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.bench.turn_set import TURN_CASES, case_audio
from app.core.engines import AsrEngine, ChatMessage, TurnEndModel
from app.core.turn_model import text_may_go_on, text_says_unfinished, unsure_question_ending


@dataclass(frozen=True)
class CueSample:
    case_id: str
    should_wait: bool  # an opening: the turn is not over
    text: str
    text_unfinished: bool
    p_complete: float | None
    audio_ms: float | None
    p_llm: float | None = None
    llm_ms: float | None = None


def sample_cues(
    asr: AsrEngine,
    audio_model: TurnEndModel | None,
    audio: dict[str, np.ndarray],
    llm: Any = None,
    system_prompt: str = "",
) -> list[CueSample]:
    """Each cue on every opening and every finished turn; ``llm`` adds P(end of turn) after the words."""
    samples: list[CueSample] = []
    for case in TURN_CASES:
        if case.kind == "complete":
            inputs = [(case_audio(case, audio), False)]
        elif case.kind == "hesitation":
            inputs = [(audio[case.parts[0].id], True), (case_audio(case, audio), False)]
        else:
            continue
        for clip, should_wait in inputs:
            transcript = asr.transcribe(clip)
            text = transcript.text
            p, ms = None, None
            if audio_model is not None:
                started = time.perf_counter()
                p = audio_model.complete_probability(clip)
                ms = (time.perf_counter() - started) * 1000
            p_llm, llm_ms = None, None
            if llm is not None:
                started = time.perf_counter()
                p_llm = llm.end_of_turn_probability([ChatMessage("system", system_prompt), ChatMessage("user", text)])
                llm_ms = (time.perf_counter() - started) * 1000
            # a long or a short hold (an ending that may go on, a last word the recogniser doubts)
            held = (
                text_says_unfinished(text)
                or text_may_go_on(text)
                or unsure_question_ending(text, transcript.last_word_p)
            )
            samples.append(CueSample(case.id, should_wait, text, held, p, ms, p_llm, llm_ms))
    return samples


def cue_table(samples: list[CueSample], threshold: float = 0.5, llm_threshold: float = 0.8) -> list[dict[str, object]]:
    """Per cue rule: openings held (want 100 %) and finished turns held by mistake (want 0 %)."""

    def llm_waits(s: CueSample) -> bool:
        return s.p_llm is not None and s.p_llm < llm_threshold

    rules = {
        "text": lambda s: s.text_unfinished,
        "llm": llm_waits,
        # The shipped model asks the LLM only where the words do not end on "?" (TurnModel.asks_llm).
        "text+llm (shipped)": lambda s: s.text_unfinished or (not s.text.rstrip().endswith("?") and llm_waits(s)),
        "audio": lambda s: s.p_complete is not None and s.p_complete < threshold,
        "both (either says unfinished)": lambda s: (
            s.text_unfinished or (s.p_complete is not None and s.p_complete < threshold)
        ),
        "both (both say unfinished)": lambda s: (
            s.text_unfinished and (s.p_complete is not None and s.p_complete < threshold)
        ),
    }
    openings = [s for s in samples if s.should_wait]
    finished = [s for s in samples if not s.should_wait]
    audio_ms = [s.audio_ms for s in samples if s.audio_ms is not None]
    llm_ms = [s.llm_ms for s in samples if s.llm_ms is not None]
    rows = []
    for name, waits in rules.items():
        uses_audio, uses_llm = "audio" in name or "both" in name, "llm" in name
        if (uses_audio and not audio_ms) or (uses_llm and not llm_ms):
            continue
        cost = (float(np.median(audio_ms)) if uses_audio else 0.0) + (float(np.median(llm_ms)) if uses_llm else 0.0)
        rows.append(
            {
                "cue": name,
                "openings held": f"{sum(map(waits, openings))}/{len(openings)}",
                "finished turns held": f"{sum(map(waits, finished))}/{len(finished)}",
                "CPU per decision p50 ms": round(cost, 1),
            }
        )
    return rows
