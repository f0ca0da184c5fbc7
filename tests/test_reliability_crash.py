"""Crash safety: kill -9 mid-turn loses no finished turn, corrupts nothing the next start reads, keeps settings."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.conversation import Conversation
from app.core.history import JsonlLog, read_log

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "docs" / "bench" / "questions"
RECORD_KEYS = {"turn_id", "user", "reply", "generated", "interrupted", "metrics"}


def _wavs(*ids: str) -> list[str]:
    found = [next(QUESTIONS.glob(f"{qid}-*.wav")) for qid in ids]
    return [arg for path in found for arg in ("--input", str(path))]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_kill_9_mid_turn_keeps_every_finished_turn(config, engines, tmp_path: Path, caplog) -> None:
    log_path = tmp_path / "turns.jsonl"
    cfg = tmp_path / "config.toml"
    cfg.write_text("[llm]\nmax_reply_tokens = 16\n")  # short replies: the turns come quickly
    cmd = [sys.executable, "-m", "app", "converse", "--config", str(cfg), "--no-face", "--log", str(log_path)]
    cmd += _wavs("q03", "q07", "q05", "q08", "q01")  # the shortest questions first
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            logged = len(_lines(log_path))
            heard = sum(" you: " in line for line in list(said))
            if logged >= 1 and heard > logged:  # a turn heard but not finished: that is mid-turn
                break
            time.sleep(0.01)
        assert proc.poll() is None, "converse ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    lines = _lines(log_path)
    assert len(lines) >= 1
    records = [json.loads(line) for line in lines]  # every line is whole JSON
    assert all(set(r) >= RECORD_KEYS for r in records)
    assert records[0]["turn_id"] == 1 and records[0]["reply"]

    # The next start appends to the same log and reads back everything, with no warning.
    caplog.set_level(logging.WARNING)
    log = JsonlLog(log_path)
    conversation = Conversation(replace(config, max_reply_tokens=8), engines, log=log)
    conversation.start()
    try:
        conversation.say("Hello again.")
        assert conversation.wait_idle(60)
    finally:
        assert conversation.shutdown()
    again = read_log(log_path)
    assert again[: len(records)] == records and again[-1]["user"] == "Hello again."
    assert not [r for r in caplog.records if "not a complete record" in r.getMessage()]


def test_a_line_cut_short_by_a_crash_is_skipped_and_never_glued_to_the_next(tmp_path: Path, caplog) -> None:
    path = tmp_path / "turns.jsonl"
    JsonlLog(path).write({"turn_id": 1, "user": "hi", "reply": "hello"})
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"turn_id": 2, "user": "cut he')  # what a kill inside write() leaves
    JsonlLog(path).write({"turn_id": 3, "user": "after the restart", "reply": "ok"})
    caplog.set_level(logging.WARNING)
    records = read_log(path)
    assert [r["turn_id"] for r in records] == [1, 3]
    assert any("line 2 is not a complete record" in r.getMessage() for r in caplog.records)
    assert path.read_bytes().endswith(b'"reply": "ok"}\n')
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # a conversation is private


def test_settings_survive_kill_9(tmp_path: Path) -> None:
    """Changes made in the window are on disk at once: killing the process right after loses none."""
    ini = tmp_path / "doppel.ini"
    script = f"""
import os, sys, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from app.config import Config
from app.ui.devices import DeviceProvider
from app.ui.launch import build_app
from app.ui.settings import AppSettings, SettingKey
app = QApplication([])
settings = AppSettings(QSettings({str(ini)!r}, QSettings.Format.IniFormat))
window = build_app(Config(log_dir={str(tmp_path)!r}), settings, DeviceProvider.none(), replica=False, start=False)
window.mode.setCurrentIndex(window.mode.findData("push_to_talk"))
window.mute.setChecked(True)
window.hud_button.setChecked(False)
print("changed", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "changed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    from PySide6.QtCore import QSettings

    from app.ui.settings import AppSettings, SettingKey

    again = AppSettings(QSettings(str(ini), QSettings.Format.IniFormat))
    assert again.text(SettingKey.MIC_MODE) == "push_to_talk"
    assert again.flag(SettingKey.MUTED) is True
    assert again.flag(SettingKey.HUD_VISIBLE) is False


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB filesystem (tmpfs), so a disk really fills up; needs root, as in the dev container."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_disk_that_fills_mid_line_leaves_no_half_record(tiny_disk: Path) -> None:
    reports: list[str] = []
    log = JsonlLog(tiny_disk / "turns.jsonl", on_error=reports.append)
    written = [log.write({"turn_id": i, "user": "x" * 1000}) for i in range(100)]
    assert 0 < sum(written) < 100 and log.dropped == 100 - sum(written)
    assert len(reports) == 1 and "disk is full" in reports[0]
    data = (tiny_disk / "turns.jsonl").read_bytes()
    assert data.endswith(b"\n")  # the half line the full disk took was taken back
    assert [json.loads(line)["turn_id"] for line in data.splitlines()] == list(range(sum(written)))
