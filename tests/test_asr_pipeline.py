"""Moonshine in the real pipeline: it decodes while the user speaks, and the final starts from that draft."""

from __future__ import annotations

from app.compose import Engines
from app.core import events as ev
from app.core.audio_io import SourceItem
from tests.conftest import trim_silence
from tests.test_conversation import run_session

QUESTION = "I have been feeling tired lately and I wonder what simple habits could help me sleep better at night?"


def test_moonshine_decodes_while_the_user_speaks(config, moonshine_asr, llm, tts, speak16k, tmp_path, monkeypatch):
    engines = Engines(asr=moonshine_asr, llm=llm, tts=tts, load_s={})
    audio = trim_silence(speak16k(QUESTION))
    decodes: list = []  # every decode the real engine ran, in order (a spy, the engine itself runs)
    decode = moonshine_asr.decode
    monkeypatch.setattr(moonshine_asr, "decode", lambda *a, **k: decodes.append(decode(*a, **k)) or decodes[-1])

    def items(_holder, _rec):
        return [SourceItem(audio)]

    conversation, rec, records, leftover, _sink = run_session(config, engines, tmp_path, items)
    finals = rec.of(ev.TranscriptFinal)
    assert len(finals) == 1 and not finals[0].not_a_turn, [(e.text, e.not_a_turn) for e in finals]
    heard = finals[0].text.lower()
    assert "tired" in heard and "sleep" in heard, heard
    # ~5 s of speech: a decode every 0.4 s of voice, one at a time on the ASR worker.
    assert conversation.asr_partials >= 4, conversation.asr_partials
    final = decodes[-1]  # the transcript the reply waited for: most of it came from the drafts
    assert final.accepted >= 0.7 * final.tokens, (final.accepted, final.tokens)
    assert len(records) == 1 and records[0]["reply"]
    assert not leftover
