"""One person: the replica's photo, name and voice are chosen together, and the persona prompt uses the name."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from app.cli import build_parser, config_from_args
from app.config import DEFAULT_SYSTEM_PROMPT, Config, load_config
from app.replica import NoFaceError, Replica
from app.replica.bench import moved_portrait


def test_the_persona_prompt_follows_the_name() -> None:
    assert Config().system_prompt == DEFAULT_SYSTEM_PROMPT and "You are Joe," in DEFAULT_SYSTEM_PROMPT
    ava = Config().with_overrides(persona_name="Ava")
    assert ava.system_prompt.startswith("You are Ava, ") and "Joe" not in ava.system_prompt
    assert ava.with_overrides(persona_name="Joe").system_prompt == DEFAULT_SYSTEM_PROMPT
    assert Config(persona_name="Max", system_prompt="I am {name}.").system_prompt == "I am Max."
    assert Config(persona_name="Max", system_prompt="Be brief.").system_prompt == "Be brief."  # one's own, kept


def test_photo_name_and_voice_come_from_the_command_line_and_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[persona]\nname = "Ava"\nphoto = "/photos/ava.jpg"\n[models]\nvoice = "/voices/ava.onnx"\n')
    from_file = load_config(cfg)
    chosen = (from_file.persona_name, from_file.face_photo, from_file.voice)
    assert chosen == ("Ava", "/photos/ava.jpg", "/voices/ava.onnx")
    assert from_file.system_prompt.startswith("You are Ava, ")
    args = build_parser().parse_args(["--config", str(cfg), "--name", "Max", "--photo", "me.png", "chat"])
    config = config_from_args(args)
    assert (config.persona_name, config.face_photo) == ("Max", "me.png")
    assert config.system_prompt.startswith("You are Max, ")


def test_a_replica_is_made_from_a_photo_file(tmp_path: Path) -> None:
    photo, _ = moved_portrait((0.9, -8.0, (40, 30), 1.5))
    path = tmp_path / "me.jpg"
    cv2.imwrite(str(path), photo)
    rep = Replica.from_file(path, seed=1)
    left, right = rep.landmarks[36:42].mean(0), rep.landmarks[42:48].mean(0)
    assert abs(left[1] - right[1]) < 1.5 and 90 < right[0] - left[0] < 102
    with pytest.raises(OSError):
        Replica.from_file(tmp_path / "missing.jpg")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), photo * 0 + 128)
    with pytest.raises(NoFaceError):
        Replica.from_file(blank)
