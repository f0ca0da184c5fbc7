"""Security: no shell or eval anywhere, and the API key never leaves the process in clear."""

from __future__ import annotations

import ast
import json
import logging
import traceback
from dataclasses import replace
from pathlib import Path

import pytest

from app.config import ConfigError, load_config
from app.core.conversation import Conversation
from app.core.engines import ChatMessage
from app.core.history import JsonlLog
from app.engines.llm_openai import FallbackLlm, LlmBackendError, OpenAiCompatLlm
from tests.servers.fake_openai import FakeOpenAiServer

APP = Path(__file__).resolve().parents[1] / "app"
KEY = "sk-live-7c1e9f0b2d4a6c8e0f1a3b5d"
# Modules allowed to start processes, and why; every call must pass an argument list, never a shell string.
SUBPROCESS_USERS = {
    "app/bench/questions.py": "espeak-ng and the question generator, fixed commands",
    "app/bench/asr.py": "sox's tempo effect for the ASR comparison's speed variants, a fixed argument list",
}


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call in ``tree`` with its dotted name (``os.system``, ``eval``, ``subprocess.run``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts = []
            func = node.func
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                parts.append(func.id)
            found.append((".".join(reversed(parts)), node))
    return found


def test_no_eval_exec_or_shell_in_the_app() -> None:
    forbidden = {"eval", "exec", "compile", "__import__", "os.system", "os.popen", "pickle.loads", "pickle.load"}
    problems: list[str] = []
    sources = sorted(APP.rglob("*.py"))
    assert len(sources) > 50
    for path in sources:
        rel = path.relative_to(APP.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), rel)
        for name, call in _calls(tree):
            where = f"{rel}:{call.lineno} {name}"
            if name in forbidden:
                problems.append(f"{where}: forbidden call")
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                   for k in call.keywords):  # fmt: skip
                problems.append(f"{where}: shell=")
            if name.startswith(("subprocess.", "os.exec", "os.spawn")):
                if rel not in SUBPROCESS_USERS:
                    problems.append(f"{where}: starts a process outside {sorted(SUBPROCESS_USERS)}")
                elif call.args and isinstance(call.args[0], ast.Constant | ast.JoinedStr | ast.BinOp):
                    problems.append(f"{where}: command given as a string")
    assert not problems, "\n".join(problems)


def test_the_scan_would_catch_what_it_forbids() -> None:
    bad = ast.parse("import os, subprocess\neval(x)\nos.system(y)\nsubprocess.run(z, shell=True)\n")
    names = [name for name, _ in _calls(bad)]
    assert {"eval", "os.system", "subprocess.run"} <= set(names)


def test_config_file_refuses_a_key_without_repeating_it(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    for text in (f'[llm]\napi_key = "{KEY}"\n', f'[llm]\napi_key_env = "{KEY}"\n', f'[llm]\ntoken = "{KEY}"\n'):
        cfg.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(cfg)
        assert KEY not in str(info.value)
        assert "environment variable" in str(info.value)


def test_a_rejected_key_is_in_no_log_message_traceback_or_record(
    config, engines, tmp_path, caplog, monkeypatch
) -> None:
    """Remote server refuses the key and echoes it back; the turn falls back to the local model."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(engines.llm, "max_tokens", 12)
    server = FakeOpenAiServer(api_key="sk-the-right-one").start()
    try:
        remote = OpenAiCompatLlm(server.base_url, "fake-model", KEY, first_token_timeout_s=3.0)
        with pytest.raises(LlmBackendError) as info:
            list(remote.stream_chat([ChatMessage("user", "hi")]))
        assert info.value.kind == "auth"
        shown = "".join(traceback.format_exception(info.value)) + repr(remote) + str(vars(remote.last_stats))
        assert KEY not in shown and KEY[8:] not in shown
        llm = FallbackLlm(remote, engines.llm)
        log = JsonlLog(tmp_path / "turns.jsonl")
        short = replace(config, max_reply_tokens=16)
        conversation = Conversation(short, type(engines)(engines.asr, llm, engines.tts, {}), log=log)
        errors: list[str] = []
        conversation.bus.subscribe(lambda e: errors.append(getattr(e, "message", "")))
        conversation.start()
        try:
            conversation.say("Say hi.")
            assert conversation.wait_idle(60)
        finally:
            assert conversation.shutdown()
        record = json.loads(log.path.read_text(encoding="utf-8").splitlines()[-1])
        assert record["backend"] == "local (fallback)" and "rejected the API key" in record["error"]
        assert server.chat_requests[0].headers["Authorization"] == f"Bearer {KEY}"  # it was really sent
    finally:
        server.stop()
    for where, text in (
        ("log file", log.path.read_text(encoding="utf-8")),
        ("logging", caplog.text + "".join(str(r.args) for r in caplog.records)),
        ("events", "".join(errors)),
    ):
        assert KEY not in text and KEY[8:] not in text, where


@pytest.mark.parametrize("pasted", [KEY + "\n" + KEY, "Bearer " + KEY, KEY.replace("live", "lïve")])
def test_a_key_pasted_wrong_is_refused_before_any_request(pasted: str) -> None:
    """httpx would quote such a header, escaped, in its error: the key must not get that far."""
    llm = OpenAiCompatLlm("http://127.0.0.1:9/v1", "m", pasted)
    with pytest.raises(LlmBackendError) as info:
        list(llm.stream_chat([ChatMessage("user", "hi")]))
    shown = "".join(traceback.format_exception(info.value)) + repr(llm)
    assert info.value.kind == "auth" and "DOPPEL_API_KEY" in str(info.value)
    assert KEY[8:] not in shown and "lïve" not in shown
