"""The reply bench: its checks on written replies, its subset on the real models, and the prompt styles."""

from __future__ import annotations

from dataclasses import replace

from app.bench import replies as rp
from app.core.engines import ChatMessage
from app.engines.llm_prompt import CHAT_FEW_SHOT, EXAMPLES, TRANSCRIPT_FEW_SHOT, SentenceCount

PERSONA = "You are Joe, a friendly and helpful person talking on a video call. Keep answers short."


def test_right_answer_needs_every_group_or_the_count_asked() -> None:
    hours = rp.Turn("How many hours?", (("24", "twenty-four"),))
    assert rp.right("A day has twenty-four hours.", hours) and rp.right("24 of them.", hours)
    assert not rp.right("A day has 12 hours.", hours) and not rp.right("It has 240 hours.", hours)
    colours = rp.Turn("Name three colours.", tuple((c,) for c in rp.COLOURS), need=3)
    assert rp.right("Red, blue and green.", colours) and not rp.right("Red and blue.", colours)
    assert rp.right("Anything at all.", rp.Turn("Hi!")) is None


def test_parroting_is_the_users_words_back_with_nothing_added() -> None:
    assert rp.parrots("Sorry, but what time is it right now?", "Sorry, I'm sorry. What time is it?")
    assert rp.parrots("Yeah.", "Yeah.") and rp.parrots("Thanks, that was helpful!", "Thanks, that was helpful!")
    question = "What is the largest planet in our solar system?"
    assert not rp.parrots(question, "The largest planet in our solar system is Jupiter.")
    assert not rp.parrots("Hi there how are you today?", "I am fine. How are you?")
    assert rp.repeats_itself("Cats are loyal. They purr a lot.", "Cats are loyal. They purr a lot.")
    assert not rp.repeats_itself("What else is on your mind?", "Cats are loyal.")


def test_leaks_cuts_lengths_and_language() -> None:
    recited = "I'm Joe, a friendly and helpful person talking on a video call. I love the sea!"
    assert rp.leaks(recited, PERSONA) and not rp.leaks("I'm Joe, and I love the sea!", PERSONA)
    example = ("So, what would you like to talk about?",)
    assert rp.leaks("So, what would you like to talk about today?", PERSONA, example)
    assert rp.cut("The capital of France is", "stop") and rp.cut("Fine.", "length")
    assert not rp.cut('The answer is "green"', "stop") and not rp.cut("Nice! 🙂", "stop")
    assert rp.too_long("One. Two. Three.", rp.Turn("x")) and not rp.too_long("One. Two.", rp.Turn("x"))
    assert rp.too_long("The grass is green.", rp.Turn("x", max_words=3))
    assert rp.switches_language("Je suis très content, et vous? Est-ce que le temps est beau?")
    assert rp.switches_language("Привет, как дела?")
    assert not rp.switches_language("The capital of France is Paris, and it is lovely in spring.")


def test_sentence_cap_stops_before_the_next_sentence() -> None:
    kept: list[str] = []
    count = SentenceCount(2)
    for piece in ["Hi", "!", " ", "How", " are", " you", "?", " I", " am", "."]:
        if count.full_before(piece):
            break
        kept.append(piece)
    assert "".join(kept) == "Hi! How are you?"
    decimals = SentenceCount(1)
    assert not any(decimals.full_before(p) for p in ["It", " is", " 3", ".", "5", " metres"])


def test_few_shot_turns_sit_in_the_cached_prefix(llm) -> None:
    assert llm.style == CHAT_FEW_SHOT  # the default for a model with a chat template
    system = ChatMessage("system", PERSONA)
    text = llm._llm.detokenize(llm.prompt_tokens([system, ChatMessage("user", "Hello there!")])).decode()
    assert text.index(PERSONA) < text.index(EXAMPLES[1].content) < text.index("Hello there!")
    llm.prefill([system])
    with_examples = llm.prompt_tokens([system])
    assert llm.cached_prefix(with_examples) == len(with_examples)  # persona and examples: evaluated once
    list(llm.stream_chat([system, ChatMessage("user", "What is the capital of Spain?")]))
    assert llm.last_stats.evaluated_tokens < 20  # only the user's message and the reply's header


def test_a_transcript_style_reply_ends_at_its_line(llm) -> None:
    """Base models (no chat template) get this style; forced here on the bundled model."""
    saved = llm.style
    llm.set_style(replace(TRANSCRIPT_FEW_SHOT, sampling=(("temp", 0.0),)))
    try:
        text = llm._llm.detokenize(llm.prompt_tokens([ChatMessage("system", PERSONA), ChatMessage("user", "Hi!")]))
        assert text.decode().endswith("User: Hi!\nAssistant:")
        reply = "".join(t.text for t in llm.stream_chat([ChatMessage("system", PERSONA), ChatMessage("user", "Hi!")]))
        assert reply.strip() and "\n" not in reply and "User:" not in reply
        assert llm.last_stats.finish_reason in ("stop", "length")
    finally:
        llm.set_style(saved)


def test_reply_bench_subset_on_the_real_pipeline(config, engines, tmp_path) -> None:
    from app.bench.replies_report import run_replies
    from app.bench.replies_run import Variant

    doc = run_replies(config, tmp_path, [Variant("default")], quick=True, spoken=True, engines=engines)
    (result,) = doc["variants"]
    typed = result["typed"]
    assert typed["summary"]["replies"] == 6  # five scripts, the follow-up has two turns
    by_script = {r["script"]: r for r in typed["replies"]}
    assert by_script["f01"]["right"] is True, by_script["f01"]  # "Paris"
    assert typed["summary"]["leak"] == 0, [r["reply"] for r in typed["replies"] if r["leak"]]
    assert typed["latency"]["ttft_ms"] > 0 and typed["latency"]["tps"] > 0
    spoken = result["spoken"]
    assert spoken["summary"]["replies"] == spoken["asked"] == 3, spoken["replies"]
    assert spoken["speech_end_to_first_audio_ms"]["n"] == 3
    assert "Paris" in spoken["replies"][0]["reply"]
    md = (tmp_path / "replies.md").read_text()
    assert "| default | chat+examples | 6 |" in md and "end of speech → first audio" in md
