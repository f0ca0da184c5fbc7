"""How a conversation becomes the text a model continues: its template, few-shot turns and stop rules.

The few-shot turns sit right after the persona, so they are part of the
prefix the KV cache keeps from start-up to the end of the conversation: they
cost evaluation once, not per turn.  They are persona-neutral (no name, no
claim about who the replica is), and none of them answers a prompt of the
reply bench (``app/bench/replies.py``), which would flatter the score.

A GGUF without a chat template (a base model such as Gemma 3 270M) is talked
to as a plain transcript, "User: ... / Assistant: ...", one line per turn: a
base model has read many of those, and a newline ends its reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.core.engines import ChatMessage


def _pairs(*texts: str) -> tuple[ChatMessage, ...]:
    roles = ("user", "assistant")
    return tuple(ChatMessage(roles[i % 2], text) for i, text in enumerate(texts))  # type: ignore[arg-type]


# Short, complete, on topic; a hum gets a short prompt back, an instruction is obeyed to the letter.
# The factual question comes last, nearest the conversation: in that order SmolLM2 gave 67 % right
# answers on the reply bench, with it second 56 % (same 162 replies; docs/bench/replies.md).
EXAMPLES = _pairs(
    "Hello!",
    "Hi! Nice to see you. How is your day going?",
    "Mm-hmm.",
    "So, what would you like to talk about?",
    "Answer in one word: what colour is snow?",
    "White.",
    "I just got back from a run.",
    "Nice! How far did you go?",
    "What is the capital of Italy?",
    "The capital of Italy is Rome.",
)
EXAMPLES_FACT_SECOND = (*EXAMPLES[:2], *EXAMPLES[-2:], *EXAMPLES[2:-2])  # the order first tried

# The same, with a fact the user told earlier asked back: small models otherwise ignore the history.
EXAMPLES_RECALL = (
    *EXAMPLES[:2],
    *_pairs(
        "My sister is called Anna.",
        "That's a lovely name. Are you two close?",
        "What is my sister's name?",
        "Your sister is called Anna.",
    ),
    *EXAMPLES[2:],
)


@dataclass(frozen=True)
class PromptStyle:
    """What the engine adds around the conversation; ``sampling`` overrides the engine's defaults."""

    name: str
    examples: tuple[ChatMessage, ...] = ()
    transcript: bool = False  # no chat template: plain "User:/Assistant:" lines
    stop_at_newline: bool = False  # a reply is one paragraph (transcripts: one line)
    max_sentences: int = 0  # stop before a sentence past this many (0: no limit but the token cap)
    sampling: tuple[tuple[str, float], ...] = ()

    def arrange(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """The messages with the few-shot turns after the persona (before any real turn)."""
        msgs = list(messages)
        if not self.examples:
            return msgs
        head = 1 if msgs and msgs[0].role == "system" else 0
        return [*msgs[:head], *self.examples, *msgs[head:]]

    def render_transcript(self, messages: Sequence[ChatMessage]) -> str:
        """The transcript a base model continues; it ends with the assistant's label when a user spoke last."""
        lines: list[str] = []
        for m in self.arrange(messages):
            if m.role == "system":
                lines.append(m.content.strip() + "\n")
            else:
                label = "User" if m.role == "user" else "Assistant"
                lines.append(f"{label}: {' '.join(m.content.split())}")
        text = "\n".join(lines)
        if messages and messages[-1].role == "user":
            text += "\nAssistant:"
        return text


class SentenceCount:
    """Counts finished sentences in a streamed reply: a piece starting with a space after . ! ? starts one."""

    def __init__(self, limit: int) -> None:
        self.limit, self.done, self.tail = limit, 0, ""

    def full_before(self, piece: str) -> bool:
        """True when ``piece`` would start a sentence past the limit (the caller stops before it)."""
        if not self.limit or not piece.strip():
            self.tail = (self.tail + piece)[-8:]
            return False
        spaced = piece[:1].isspace() or self.tail[-1:].isspace()
        if spaced and self.tail.rstrip().rstrip("\"')]*").endswith((".", "!", "?", "…")):
            self.done += 1
            if self.done >= self.limit:
                return True
        self.tail = (self.tail + piece)[-8:]
        return False


CHAT = PromptStyle("chat")  # the chat template alone, as before the reply bench
CHAT_FEW_SHOT = PromptStyle("chat+examples", examples=EXAMPLES)
# Stops before a third sentence (the persona asks for one or two): replies past it 12 -> 6 %, faultless
# 67 -> 70 % on the reply bench. Not the default yet: with it, test_turn_taking's backchannel test lost
# its lips timing after a resume (a reply done generating before the pause); see docs/bench/replies.md.
CHAT_CAPPED = PromptStyle("chat+examples+cap", examples=EXAMPLES, max_sentences=2)
TRANSCRIPT_FEW_SHOT = PromptStyle("transcript+examples", examples=EXAMPLES, transcript=True, stop_at_newline=True)
CHAT_FACT_SECOND = PromptStyle("chat+examples-fact-second", examples=EXAMPLES_FACT_SECOND, max_sentences=2)
CHAT_RECALL = PromptStyle("chat+recall", examples=EXAMPLES_RECALL)
TRANSCRIPT_RECALL = PromptStyle("transcript+recall", examples=EXAMPLES_RECALL, transcript=True, stop_at_newline=True)
STYLES = {
    s.name: s
    for s in (CHAT, CHAT_FEW_SHOT, CHAT_CAPPED, TRANSCRIPT_FEW_SHOT, CHAT_FACT_SECOND, CHAT_RECALL, TRANSCRIPT_RECALL)
}


def default_style(has_chat_template: bool) -> PromptStyle:
    """The style a model gets unless the caller picks one, chosen on the reply bench (docs/bench/replies.md).

    SmolLM2-135M-Instruct, 162 typed replies, against the chat template alone: right answers
    60 -> 67 %, persona recited 17 -> 2 %, replies past two sentences 25 -> 12 %, faultless replies
    43 -> 67 %; TTFT and TPS unchanged (the turns are in the cached prefix).
    """
    return CHAT_FEW_SHOT if has_chat_template else TRANSCRIPT_FEW_SHOT
