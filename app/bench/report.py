"""Numbers from the raw samples: percentiles, ratios and the Markdown table.

Every figure in the report is recomputed here from the samples stored in the
JSON, so the JSON alone is enough to check it.  Ratios are ratios of medians.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.bench.report_sessions import (  # noqa: F401  (re-exported)
    GUI_KEYS,
    LONG_SESSION_KEYS,
    gui_table,
    long_session_summary,
    long_session_table,
    ratio,
    repeats_line,
    same_prompts_summary,
    summary,
    window_analysis,
)
from app.bench.report_sessions import fmt as _fmt
from app.core.cpu_plan import CpuPlanSettings


@dataclass(frozen=True)
class Stage:
    key: str  # metric key in a turn's "metrics"
    label: str
    unit: str  # "ms" or "" (tokens per second)
    raw_key: str | None = None  # the same quantity in the direct-call samples
    what: str = ""
    ratio: bool = True  # pipeline / raw means something


_THINKING = CpuPlanSettings().thinking  # the face's budget while thinking, as the report states it
STAGES = (
    Stage("vad_end_of_turn_ms", "VAD end-of-turn delay", "ms", None, "end of voice -> VAD decides the turn is over"),
    Stage("asr_ms", "ASR compute", "ms", "asr_ms", "transcription time of the final transcript"),
    Stage("asr_final_ms", "ASR final", "ms", None, "end of voice -> final transcript"),
    Stage("asr_wer", "ASR word error rate", "%", "asr_wer", "against the question's text", ratio=False),
    Stage("ttft_ms", "TTFT", "ms", "ttft_ms", "LLM request -> first token"),
    Stage("llm_queue_ms", "LLM queue wait", "ms", None, "final transcript -> LLM worker starts the reply"),
    Stage("effective_ttft_ms", "effective TTFT", "ms", "ttft_ms", "final transcript -> first token"),
    Stage("tps", "TPS", "", "tps", "tokens/s after the first token, while the LLM runs"),
    Stage("llm_yield_ms", "LLM pause for the first clause's TTS", "ms", None, "both cores to Piper", ratio=False),
    Stage("llm_tts_wait_ms", "LLM waits for later sentences' TTS", "ms", None, "both cores to Piper", ratio=False),
    Stage("llm_face_wait_ms", "LLM rests while the face renders ahead", "ms", None, "frames in a burst", ratio=False),
    Stage("llm_latency_ms", "20/TPS + TTFT", "ms", "llm_latency_ms", "the seed's LLM figure of merit"),
    Stage("twentieth_token_ms", "20th token (measured)", "ms", "twentieth_token_ms", "LLM request -> 20th token"),
    Stage("first_chunk_to_tts_ms", "first chunk to TTS", "ms", "first_chunk_ms", "LLM request -> first clause"),
    Stage("tts_first_audio_ms", "TTS first audio", "ms", "tts_first_ms", "first clause -> its first audio"),
    Stage("first_replica_frame_ms", "first replica frame", "ms", "render_ms", "first audio heard -> first face frame"),
    Stage(
        "speech_end_to_first_audio_ms",
        "end of speech -> first audio",
        "ms",
        "raw_e2e_audio_ms",
        "end of user voice -> first reply sample heard",
    ),
    Stage(
        "speech_end_to_first_frame_ms",
        "end of speech -> first frame",
        "ms",
        "raw_e2e_frame_ms",
        "end of user voice -> first speaking frame",
    ),
    Stage("barge_in_ms", "barge-in onset -> silence", "ms", None, "VAD's voice onset -> output silent"),
    Stage("barge_in_true_ms", "barge-in true onset -> silence", "ms", None, "file's voice onset -> output silent"),
)
# The median turn's critical path: (label, from mark, to mark, colour key); the last row runs alongside.
WATERFALL = (  # the VAD window runs alongside the chain below it, which starts at the first silent frame
    ("VAD end-of-turn window", "voice_end", "vad_decided", "vad"),
    ("ASR final transcript", "voice_end", "asr_final", "asr"),
    ("LLM: waiting for the worker", "asr_final", "llm_request", "llm_light"),
    ("LLM: TTFT", "llm_request", "first_token", "llm"),
    ("LLM: up to first clause", "first_token", "first_chunk", "llm"),
    ("TTS: first audio", "first_chunk", "tts_first_audio", "tts"),
    ("audio out (held to end of turn)", "tts_first_audio", "first_audio_played", "out"),
    ("replica: first speaking frame", "first_audio_played", "first_replica_frame", "face"),
    ("LLM: rest of the reply", "first_chunk", "llm_done", "llm_light"),
)
E2E = (
    ("speech_end_to_first_audio_ms", "raw_e2e_audio_ms", "naive_e2e_audio_ms", "end of speech -> first audio"),
    ("speech_end_to_first_frame_ms", "raw_e2e_frame_ms", "naive_e2e_frame_ms", "end of speech -> first frame"),
)


def pipeline_values(result: dict, key: str) -> list[float | None]:
    """All samples of one metric in a backend's session (barge-in metrics come from the barge-in list)."""
    session = result["session"]
    if key.startswith("barge_in"):
        return [b[key] for b in session["barge_ins"]]
    return [t["metrics"].get(key) for t in session["turns"]]


def direct_values(result: dict, key: str) -> list[float | None]:
    return [s.get(key) for s in result["direct"]]


def analyse(result: dict) -> dict:
    """Summaries and ratios for one backend (added to its result)."""
    pipeline = {s.key: summary(pipeline_values(result, s.key)) for s in STAGES}
    raw_keys = (
        {s.raw_key for s in STAGES if s.raw_key}
        | {n for _, _, n, _ in E2E}
        | {"llm_total_ms", "tts_full_ms", "raw_decode_tps", "raw_decode_tps_at_depth", "prompt_tokens"}
    )
    direct = {k: summary(direct_values(result, k)) for k in sorted(raw_keys)}
    over_raw = {s.key: ratio(pipeline[s.key]["p50"], direct[s.raw_key]["p50"]) for s in STAGES if s.raw_key and s.ratio}
    naive_over = {p: ratio(direct[n]["p50"], pipeline[p]["p50"]) for p, _, n, _ in E2E}
    # Each question's engine TPS over the bare decode timed right after it: the host's speed drifts
    # (up to 1.8x between minutes), and a pair shares it where a ratio of medians may not.
    paired = [s["tps"] / s["raw_decode_tps"] for s in result["direct"] if s.get("tps") and s.get("raw_decode_tps")]
    out = {
        "pipeline": pipeline,
        "direct": direct,
        "ratios": {
            "pipeline_over_raw": over_raw,
            "naive_over_pipeline": naive_over,
            "engine_over_bare_paired": summary(paired),
        },
    }
    out["same_prompts"] = same_prompts_summary(result["session"], pipeline["tps"]["p50"])
    if result.get("long_session"):
        out["long_session"] = long_session_summary(result["long_session"]["turns"])
        long_tps = out["long_session"]["tps"]["all"]["p50"]
        out["long_session_same_prompts"] = same_prompts_summary(result["long_session"], long_tps)
    if result.get("gui_session"):
        out["gui"] = window_analysis(result)
    return out


def median_turn(result: dict, key: str = "speech_end_to_first_audio_ms") -> dict | None:
    """The turn whose end-to-end time is the (lower) median, for the waterfall."""
    turns = [t for t in result["session"]["turns"] if t["metrics"].get(key) is not None and t["marks_ms"]]
    if not turns:
        return None
    turns.sort(key=lambda t: t["metrics"][key])
    return turns[(len(turns) - 1) // 2]


# --- Markdown ---------------------------------------------------------------------


def stage_table(name: str, result: dict) -> list[str]:
    a = result["analysis"]
    lines = [
        f"| stage ({name}) | n | p50 | p90 | max | raw p50 | pipeline ÷ raw |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for s in STAGES:
        p = a["pipeline"][s.key]
        raw = a["direct"][s.raw_key]["p50"] if s.raw_key else None
        over_raw = a["ratios"]["pipeline_over_raw"].get(s.key)
        unit = {"ms": " (ms)", "": " (tok/s)"}.get(s.unit, "")
        lines.append(
            f"| {s.label}{unit} | {p['n']} | {_fmt(p['p50'], s.unit)} | {_fmt(p['p90'], s.unit)} | "
            f"{_fmt(p['max'], s.unit)} | {_fmt(raw, s.unit) if s.raw_key else '–'} | "
            f"{_fmt(over_raw, 'x') if s.raw_key and s.ratio else '–'} |"
        )
    return lines


def e2e_table(results: dict[str, dict]) -> list[str]:
    lines = [
        "| backend | metric | pipeline p50 | raw limit p50 | naive chain p50 | pipeline ÷ raw | naive ÷ pipeline |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for name, result in results.items():
        a = result["analysis"]
        for p, r, n, label in E2E:
            lines.append(
                f"| {name} | {label} (ms) | {_fmt(a['pipeline'][p]['p50'])} | {_fmt(a['direct'][r]['p50'])} | "
                f"{_fmt(a['direct'][n]['p50'])} | {_fmt(a['ratios']['pipeline_over_raw'][p], 'x')} | "
                f"{_fmt(a['ratios']['naive_over_pipeline'][p], 'x')} |"
            )
    return lines


def seed_table(results: dict[str, dict], seed: list[dict]) -> list[str]:
    lines = ["| system | TTFT (ms) | TPS | 20/TPS + TTFT (ms) |", "|---|--:|--:|--:|"]
    for row in seed:
        lat = row["llm_latency_ms"]
        lines.append(f"| {row['name']} (seed) | {row['ttft_ms']:.0f} | {row['tps']:.0f} | {lat:.0f} |")
    for name, result in results.items():
        for label, source, key in (
            ("pipeline, TTFT as the HUD shows it", "pipeline", "ttft_ms"),
            ("pipeline, TTFT from the final transcript", "pipeline", "effective_ttft_ms"),
            ("engine alone", "direct", "ttft_ms"),
        ):
            a = result["analysis"][source]
            ttft, tps = a[key]["p50"], a["tps"]["p50"]
            lat = ttft + 20_000.0 / tps if ttft is not None and tps else None
            lines.append(f"| Doppel {name}, {label} (p50) | {_fmt(ttft)} | {_fmt(tps, '')} | {_fmt(lat)} |")
        direct = result["analysis"]["direct"]
        ceiling = direct.get("raw_decode_tps", {}).get("p50")
        if ceiling:
            a = result["analysis"]
            engine, pipeline = a["direct"]["tps"]["p50"], a["pipeline"]["tps"]["p50"]
            at_depth = direct.get("raw_decode_tps_at_depth", {}).get("p50")
            paired = a["ratios"].get("engine_over_bare_paired", {}).get("p50")
            depth = direct.get("prompt_tokens", {}).get("p50")
            lines.append(
                f"| Doppel {name}, bare `llama_decode`, llama-bench's tg128 (p50) | – | {_fmt(ceiling, '')} | "
                f"{_fmt(20_000.0 / ceiling)} |"
            )
            if at_depth:
                lines.append(
                    f"| Doppel {name}, bare `llama_decode` after the reply's {_fmt(depth, '')}-token prompt "
                    f"(tg with -d) (p50) | – | {_fmt(at_depth, '')} | {_fmt(20_000.0 / at_depth)} |"
                )
            same = a.get("same_prompts", {})
            alone = same.get("tps", {}).get("p50")
            if alone:
                depth_p50 = same["prompt_tokens"]["p50"]
                lines.append(
                    f"| Doppel {name}, engine alone on the pipeline's own prompts ({_fmt(depth_p50, '')} tokens "
                    f"p50) | – | {_fmt(alone, '')} | – |"
                )
            given = same.get("given_tps", {}).get("p50")
            if given:
                label = f"Doppel {name}, engine alone on the same prompts and tokens (p50)"
                lines.append(f"| {label} | – | {_fmt(given, '')} | – |")
            lines += [
                "",
                f"TPS ratios ({name}, same run): engine alone ÷ bare decode {_fmt(ratio(engine, ceiling), 'x')} "
                f"(each question ÷ the bare decode timed right after it, median {_fmt(paired, 'x')}; "
                f"÷ bare decode at the same depth {_fmt(ratio(engine, at_depth), 'x')}); "
                f"pipeline ÷ engine alone {_fmt(ratio(pipeline, engine), 'x')} "
                f"(÷ the engine alone on the pipeline's own prompts {_fmt(same.get('pipeline_over_alone'), 'x')}"
                f"{_long_same(a)})."
                f"{_paired(a)}",
            ]
    return lines


def _paired(analysis: dict) -> str:
    """Turn by turn, the pipeline's TPS over the engine's: on the same prompt and tokens, and on the persona alone."""
    given, persona = [], []
    for label, key in (("bench set", "same_prompts"), ("long session", "long_session_same_prompts")):
        same = analysis.get(key) or {}
        paired = same.get("pipeline_over_given") or {}
        if paired.get("p50") is not None:
            share = f"≥ 0.9× in {paired.get('at_least_0_9')} of {paired['n']}"
            given.append(f"{label} {_fmt(paired['p50'], 'x')} ({share})")
        if same.get("pipeline_over_persona") is not None:
            each = (same.get("pipeline_over_persona_paired") or {}).get("p50")
            persona.append(
                f"{label} {_fmt(same['pipeline_over_persona'], 'x')} of {_fmt(same['persona_tps']['p50'], '')} tok/s "
                f"(each turn ÷ its own, median {_fmt(each, 'x')})"
            )
    text = ""
    if given:
        text = " Each turn ÷ the engine alone decoding its very prompt and tokens, median: " + "; ".join(given) + "."
    if persona:
        text += (
            " Pipeline ÷ the engine alone answering each turn's words after the persona alone, as the direct "
            "calls do, between the turns: " + "; ".join(persona) + "."
        )
    return text


def _long_same(analysis: dict) -> str:
    long = analysis.get("long_session_same_prompts") or {}
    share = long.get("pipeline_over_alone")
    if share is None:
        return ""
    return f"; long session {_fmt(share, 'x')} of {_fmt(long['tps']['p50'], '')} tok/s alone"


def resource_table(results: dict[str, dict]) -> list[str]:
    lines = []
    for name, result in results.items():
        cpu = result["session"]["cpu"]
        render = result["session"]["render"]
        lines += [
            f"**{name}** — session {cpu['wall_s']:.0f} s wall, {cpu['process_cpu_s']:.0f} CPU s "
            f"({cpu['cpu_utilisation'] * 100:.0f} % of all cores).",
            "",
            "| stage | CPU s | share | context switches / s |",
            "|---|--:|--:|--:|",
        ]
        total = cpu["process_cpu_s"] or 1.0
        switches = cpu.get("stage_switches_per_s", {})
        for stage, secs in cpu["stage_cpu_s"].items():
            rate = "–" if switches.get(stage) is None else f"{switches[stage]:.0f}"
            lines.append(f"| {stage} | {secs:.1f} | {secs / total * 100:.0f} % | {rate} |")
        if render.get("available"):
            rs = summary(render["render_ms"])
            fi = render["frame_interval_ms"]
            lines += [
                "",
                f"Replica: {render['fps_overall']} fps overall, **{render['fps_under_load']} fps while talking "
                f"under load** (speaking while the LLM/TTS still worked, {render['load_windows_s']:.0f} s), "
                f"target {render['target_fps']:.0f} (idle: {render.get('idle_fps', render['target_fps']):.0f} fps "
                f"while listening; still for up to {_THINKING.face_still_s:.0f} s after the user stops, then "
                f"{_THINKING.face_fps:.0f} fps, to leave the CPU to ASR/LLM/TTS); "
                f"render p50 {rs['p50']:.1f} ms / p90 {rs['p90']:.1f} ms / max {rs['max']:.1f} ms; "
                f"frame interval p90 {fi['p90']:.0f} ms, max {fi['max']:.0f} ms.",
            ]
        else:
            lines += ["", "Replica: not available (metrics marked n/a)."]
        lines.append("")
    return lines


def critical_path(name: str, result: dict) -> list[str]:
    """Where the median turn's time went, segment by segment, as shares of end of speech -> first frame."""
    turn = median_turn(result)
    if turn is None:
        return []
    marks = {"voice_end": 0.0, **turn["marks_ms"]}
    end = marks.get("first_replica_frame", marks.get("first_audio_played"))
    if not end:
        return []
    parts = [
        f"{label} {marks[b] - marks[a]:.0f} ms ({(marks[b] - marks[a]) / end * 100:.0f} %)"
        for label, a, b, _ in WATERFALL[1:-1]
        if a in marks and b in marks
    ]
    window = marks.get("vad_decided")
    alongside = f" The VAD's end-of-turn window ({window:.0f} ms) ran alongside." if window is not None else ""
    spec = result["session"]["speculations"]
    return [
        f"Median turn ({name}, input {turn['input']}, {end:.0f} ms to the first frame): "
        + "; ".join(parts)
        + "."
        + alongside,
        "",
        f"Speculative replies started at the first silent frame: {spec['started']} started, {spec['reused']} "
        f"became the turn, {spec['discarded']} discarded because the user went on speaking "
        f"({spec.get('discarded_replies', 0)} of them after the reply had begun; none of it was shown or heard).",
        "",
        repeats_line(result["session"]["turns"]),
        "",
        f"Barge-in: the replica is muted after 64 ms of the user's voice and stopped at the 160 ms onset; "
        f"false mutes (voice that faded before an onset) in this run: {result['session'].get('false_mutes', 0)}.",
        "",
    ]


def markdown(doc: dict) -> str:
    """The report, readable on its own."""
    run, machine, settings = doc["run"], doc["machine"], doc["settings"]
    results = doc["backends"]
    out = [
        "# Doppel bench",
        "",
        f"Run {run['started']} ({run['mode']}, {run['duration_s']:.0f} s) on {machine['cpu']} × "
        f"{machine['cores']} cores, Python {machine['python']}; load average at start "
        f"{machine['loadavg_start']}, at end {machine['loadavg_end']} (other work on the machine makes "
        "numbers noisy). Models: " + "; ".join(f"{k}: {v['title']}" for k, v in doc["models"].items()) + ".",
        "",
        f"{settings['inputs']} spoken inputs ({settings['questions']} questions, {settings['barge_ins']} barge-in "
        f"pairs) at real-time pace through the headless pipeline; silence window {settings['silence_ms']} ms; "
        f"each reply's playout stopped {settings['playout_cap_s']} s after it began once the reply was generated "
        f"(at {settings['playout_cap_s'] + settings['generation_grace_s']} s in any case), as a user pressing Esc "
        "would, so long replies do not eat the time budget. "
        f"Baselines: {settings['direct_questions']} questions through the engines called directly. "
        f"Peak resident memory {doc['resources']['peak_rss_mb']:.0f} MB.",
        "",
    ]
    for name, result in results.items():
        out += [f"## Stages — {name} LLM", "", *stage_table(name, result), "", *critical_path(name, result)]
        out += long_session_table(name, result)
        out += gui_table(name, result)
    out += ["## End to end: pipeline vs its own engines", "", *e2e_table(results), ""]
    out += [
        "*raw limit* = the larger of the silence window and ASR + LLM to the first clause + TTS of that clause "
        "(+ one frame), the engines called directly (a design that starts at the first silent frame cannot "
        "beat it); *naive chain* = silence window + ASR + full reply + TTS of all of it "
        "(+ one frame). Ratios are ratios of medians.",
        "",
        "## The seed's LLM figure of merit",
        "",
    ]
    out += [*seed_table(results, doc["seed_reference"]), ""]
    out += ["Doppel's rows use the median TTFT and the median TPS of the turns.", ""]
    out += ["## Resources", "", *resource_table(results)]
    notes = doc.get("notes") or []
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    out += ["Every sample is in `bench.json`; the chart is `bench.png`.", ""]
    return "\n".join(out)
