"""The window end to end with the real models (session fixtures); only devices are stand-ins.

A WAV played by ``FileSource`` is the microphone, ``WavWriterSink(None, rate)``
the speaker and a generated video file the camera.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt

from app.core import events as ev
from app.core.audio_io import FileSource, SourceItem, WavWriterSink
from app.devices.camera import CameraSource
from app.devices.sound import DeviceError
from app.model_registry import ModelError
from app.ui.devices import DeviceProvider
from app.ui.launch import build_app
from app.ui.main_window import MainWindow
from app.ui.settings import AppSettings, SettingKey
from tests.test_camera import write_face_video

TURN_TIMEOUT_MS = 90_000


def _refuse(*_args: object) -> object:
    raise DeviceError("no such device")


def stand_in_devices(
    mic: Callable[[], FileSource] | None = None,
    camera_file: Path | None = None,
    speaker: bool = True,
    mics: tuple[str, ...] = ("question.wav",),
) -> DeviceProvider:
    """Devices for tests: a WAV as the microphone, a null speaker, a video file as the camera."""
    return DeviceProvider(
        list_microphones=lambda: [(m, m) for m in mics] if mic else [],
        list_speakers=lambda: [("null", "Null speaker")] if speaker else [],
        list_cameras=lambda: [(str(camera_file), "Test video")] if camera_file else [],
        open_microphone=(lambda _d, _err: mic()) if mic else _refuse,  # type: ignore[arg-type]
        open_speaker=lambda _d, rate: WavWriterSink(None, rate),
        open_camera=lambda d, on_frame, on_error: CameraSource(d, on_frame, on_error, loop=True),
    )


@pytest.fixture
def settings(tmp_path: Path) -> AppSettings:
    return AppSettings(QSettings(str(tmp_path / "doppel.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def open_window(qtbot, config, engines) -> Iterator[Callable[..., MainWindow]]:
    """Build the app through its composition root; the loader hands over the session's engines."""
    windows: list[MainWindow] = []

    def load(_config, progress):
        progress("Loading models", 0.5)
        return engines

    def open_(settings: AppSettings, devices: DeviceProvider, wait_ready: bool = True) -> MainWindow:
        window = build_app(config, settings, devices, load=load)
        window.events = []  # type: ignore[attr-defined]
        window.bridge.event.connect(window.events.append)  # type: ignore[attr-defined]
        window.show()
        windows.append(window)
        if wait_ready:
            qtbot.waitUntil(lambda: window.session.is_ready, timeout=20_000)
        return window

    yield open_
    for window in windows:
        window.close()


def of(window: MainWindow, kind: type) -> list:
    return [e for e in window.events if isinstance(e, kind)]  # type: ignore[attr-defined]


def test_typed_question_without_devices(open_window, settings, qtbot) -> None:
    window = open_window(settings, DeviceProvider.none())
    banner = window.banner.text().lower()
    assert window.banner_frame.isVisible()
    assert "microphone" in banner and "speaker" in banner and "camera" in banner
    frames_before = window.video.frames_shown
    states: list[str] = []
    window.bridge.state_changed.connect(states.append)
    qtbot.keyClicks(window.input, "What is the capital of France?")
    with qtbot.waitSignal(window.bridge.reply_finished, timeout=TURN_TIMEOUT_MS) as reply:
        qtbot.keyClick(window.input, Qt.Key.Key_Return)
    turn_id, heard = reply.args
    tokens = [e.text for e in of(window, ev.LlmToken) if e.turn_id == turn_id]
    assert len(tokens) >= 2, "the reply should stream token by token"
    shown = window.transcript.reply_text(turn_id)
    assert shown and shown == "".join(tokens).strip()
    assert "What is the capital of France?" in window.transcript.toPlainText()
    assert heard.strip()
    assert "thinking" in states and "speaking" in states
    qtbot.waitUntil(lambda: window.hud.value("final") == 1.0, timeout=5000)
    ttft, tps, total = (window.hud.value(k) for k in ("ttft_ms", "tps", "llm_latency_ms"))
    assert ttft is not None and ttft > 0
    assert tps is not None and tps > 0
    assert total == pytest.approx(20 / tps * 1000 + ttft)
    assert window.hud.value("speech_end_to_first_frame_ms") is not None
    assert window.video.frames_shown - frames_before > 25  # the replica kept moving on screen
    assert len(window.hud.history) == 1


def test_spoken_question_from_a_wav_microphone(open_window, settings, speak16k, qtbot) -> None:
    question = speak16k("What is the capital of France?")
    window = open_window(settings, stand_in_devices(mic=lambda: FileSource([SourceItem(question)])), wait_ready=False)
    qtbot.waitUntil(lambda: any(e.text for e in of(window, ev.ReplyText)), timeout=TURN_TIMEOUT_MS)
    heard = of(window, ev.TranscriptFinal)[0].text.lower()
    assert "capital" in heard and "france" in heard
    text = window.transcript.toPlainText()
    assert "You (voice)" in text and "France" in text
    assert not window.banner_frame.isVisible() or "camera" in window.banner.text().lower()
    qtbot.waitUntil(lambda: window.hud.value("final") == 1.0, timeout=5000)
    for key in ("asr_final_ms", "speech_end_to_first_audio_ms", "speech_end_to_first_frame_ms", "ttft_ms"):
        assert window.hud.value(key) is not None, key
    # The window runs the face's stage itself; the reply's speech still wakes it, so the first speaking
    # frame lands on the first sample rather than on the next idle tick (up to 125 ms later while thinking).
    assert window.session.conversation.speech_stage is window.session.stage
    assert window.session.stage.wakes >= 1


def test_settings_survive_a_restart(open_window, settings, tmp_path, qtbot) -> None:
    first = open_window(settings, DeviceProvider.none())
    first.mode.setCurrentIndex(first.mode.findData("push_to_talk"))
    first.mute.setChecked(True)
    qtbot.keyClick(first.video, Qt.Key.Key_H)  # HUD off
    assert not first.video.hud_visible
    first.apply_settings(
        {
            SettingKey.PERSONA_NAME: "Ada",
            SettingKey.SYSTEM_PROMPT: "You are Ada, a patient teacher.",
            SettingKey.CAMERA: "off",
            SettingKey.GREET: False,
        }
    )
    assert first.session.conversation.history.system.content == "You are Ada, a patient teacher."
    first.close()

    again = AppSettings(QSettings(str(tmp_path / "doppel.ini"), QSettings.Format.IniFormat))
    second = open_window(again, DeviceProvider.none())
    assert second.mode.currentData() == "push_to_talk" and second.session.mic.mode == "push_to_talk"
    assert second.mute.isChecked() and second.session.mic.muted
    assert not second.video.hud_visible and not second.hud_button.isChecked()
    assert second.video.persona == "Ada" and second.transcript.persona == "Ada"
    assert second.session.conversation.history.system.content == "You are Ada, a patient teacher."
    assert again.text(SettingKey.CAMERA) == "off" and not again.flag(SettingKey.GREET)
    assert "Camera is off" in second.banner.text()


def test_llm_markup_is_shown_literally(open_window, settings, qtbot) -> None:
    window = open_window(settings, DeviceProvider.none())
    bus = window.session.conversation.bus
    markup = '<b>bold</b> <img src="file:///etc/hosts"> <a href="x">link</a>'
    bus.publish(ev.UserText(900, "<i>question</i>"))
    bus.publish(ev.LlmToken(900, markup, 0))
    bus.publish(ev.ReplyText(900, markup))
    bus.publish(ev.ErrorEvent(900, source="llm", message="<b>failed</b>"))
    qtbot.waitUntil(lambda: "<b>failed</b>" in window.transcript.toPlainText(), timeout=2000)
    text = window.transcript.toPlainText()
    assert markup in text and "<i>question</i>" in text
    html = window.transcript.document().toHtml()
    assert "<img" not in html and "&lt;img" in html and "&lt;b&gt;bold" in html


def test_device_lost_is_reported_and_can_be_repicked(open_window, settings, qtbot) -> None:
    sources: list[FileSource] = []

    def new_mic() -> FileSource:
        sources.append(FileSource([]))
        return sources[-1]

    window = open_window(settings, stand_in_devices(mic=new_mic, mics=("mic one", "mic two")))
    gate = window.session.mic
    assert gate.device is sources[0] and "microphone" not in window.banner.text().lower()
    gate.stall_s = 0.3
    sources[0].stop()  # unplugged: no more frames
    qtbot.waitUntil(lambda: "microphone stopped" in window.banner.text(), timeout=5000)
    assert window.banner_frame.isVisible() and gate.device is None
    assert window.video.state != "listening"  # nothing to listen to
    window.apply_settings({SettingKey.MICROPHONE: "mic two"})
    assert gate.device is sources[1]
    qtbot.waitUntil(lambda: "microphone" not in window.banner.text().lower(), timeout=2000)
    sources[1].stop()  # unplugged again; plugged back in and picked again (same setting)
    qtbot.waitUntil(lambda: "microphone stopped" in window.banner.text(), timeout=5000)
    window.apply_settings({SettingKey.MICROPHONE: "mic two"})
    assert gate.device is sources[2] and "microphone" not in window.banner.text().lower()
    window.session._device_lost.emit("speaker", "The speaker stopped (unplugged?).")  # as from a device thread
    qtbot.waitUntil(lambda: "speaker stopped" in window.banner.text(), timeout=2000)
    assert window.session.speaker.silent


def test_camera_steers_gaze_shows_preview_and_greets(open_window, settings, tmp_path, qtbot) -> None:
    video = write_face_video(tmp_path / "me.avi")
    settings.set(SettingKey.GREETING, "Hello!")
    window = open_window(settings, stand_in_devices(camera_file=video), wait_ready=False)
    gazes: list[tuple[float, float]] = []
    replica = window.session.replica
    original = replica.set_gaze_target
    replica.set_gaze_target = lambda x, y: (gazes.append((x, y)), original(x, y))  # type: ignore[method-assign]
    with qtbot.waitSignal(window.session.greeted, timeout=20_000) as greeted:
        pass
    assert greeted.args == ["Hello!"]
    assert window.session.present and window.session.sighting is not None
    assert window.session.sighting.box is not None
    qtbot.waitUntil(lambda: bool(gazes), timeout=5000)
    assert gazes[-1][0] > 0  # the user is at the camera image's left: the replica looks to its right
    assert window.video._preview is not None  # the webcam picture-in-picture is showing
    qtbot.waitUntil(lambda: "(you appeared on camera)" in window.transcript.toPlainText(), timeout=5000)
    with qtbot.waitSignal(window.bridge.interrupted, timeout=10_000):
        qtbot.keyClick(window.video, Qt.Key.Key_Escape)  # Esc stops the replica mid-reply
    assert window.session.conversation.idle


def test_window_opens_before_models_load_and_queues_typed_text(qtbot, config, engines, settings) -> None:
    release = threading.Event()

    def slow_load(_config, progress):
        progress("Loading LLM model", 0.4)
        release.wait(20)
        return engines

    window = build_app(config, settings, DeviceProvider.none(), load=slow_load)
    window.show()
    try:
        qtbot.waitUntil(lambda: "Loading LLM" in window.video.notice, timeout=5000)
        assert not window.session.is_ready and window.progress.isVisible()
        qtbot.waitUntil(lambda: window.video.frames_shown > 0, timeout=3000)  # the face lives already
        window.input.setText("Hello there")
        window.send()
        assert window.input.text() == ""  # accepted: it waits for the models
        with qtbot.waitSignal(window.bridge.user_said, timeout=20_000) as said:
            release.set()
        assert said.args[1] == "Hello there"
        assert not window.progress.isVisible() and window.video.notice == ""
    finally:
        release.set()
        window.close()


def test_a_model_that_fails_to_load_is_explained(qtbot, config, settings) -> None:
    def broken(_config, _progress):
        raise ModelError("LLM model /nowhere/model.gguf does not exist. Pick a model file in Settings.")

    window = build_app(config, settings, DeviceProvider.none(), load=broken)
    window.show()
    try:
        qtbot.waitUntil(lambda: "/nowhere/model.gguf" in window.transcript.toPlainText(), timeout=5000)
        assert "failed" in window.status.text().lower()
    finally:
        window.close()


def test_nobody_in_front_of_the_camera_pauses_hands_free_listening(open_window, settings, tmp_path, qtbot) -> None:
    video = write_face_video(tmp_path / "empty.avi", seconds=1.0, face=False)
    mic = stand_in_devices(mic=lambda: FileSource([]), camera_file=video)
    window = open_window(settings, mic)
    gate = window.session.mic
    assert gate.away and not gate.is_open
    qtbot.waitUntil(lambda: window.video.state == "away", timeout=5000)
    window.mode.setCurrentIndex(window.mode.findData("push_to_talk"))
    assert not gate.away
    qtbot.keyPress(window.video, Qt.Key.Key_Space)
    assert gate.is_open
    qtbot.keyRelease(window.video, Qt.Key.Key_Space)
    assert not gate.is_open


def test_settings_dialog_round_trip(qtbot, config, settings, tmp_path) -> None:
    from app.ui.widgets.settings_dialog import SettingsDialog

    devices = stand_in_devices(mic=lambda: FileSource([]), mics=("USB mic", "Headset"))
    settings.set(SettingKey.CAMERA, "/dev/video9")  # picked earlier, unplugged now
    dialog = SettingsDialog(settings, devices, config)
    qtbot.addWidget(dialog)
    assert dialog.camera.currentText().endswith("(not connected)")
    assert dialog.system_prompt.toPlainText() == config.system_prompt
    dialog.microphone.setCurrentIndex(dialog.microphone.findData("Headset"))
    dialog.speaker.setCurrentIndex(dialog.speaker.findData("off"))
    dialog.persona_name.setText("Ada")
    dialog.llm_model.setText(str(tmp_path / "other.gguf"))
    dialog.pause_when_away.setChecked(False)
    values = dialog.values()
    assert values[SettingKey.MICROPHONE] == "Headset" and values[SettingKey.SPEAKER] == "off"
    assert values[SettingKey.PERSONA_NAME] == "Ada" and values[SettingKey.SYSTEM_PROMPT] == ""  # default kept
    assert values[SettingKey.LLM_MODEL].endswith("other.gguf") and values[SettingKey.PAUSE_WHEN_AWAY] is False
    assert values[SettingKey.ASR_ENGINE] == ""  # the config's recogniser, untouched: keep following the config
    dialog.asr_engine.setCurrentIndex(dialog.asr_engine.findData("moonshine"))
    assert dialog.values()[SettingKey.ASR_ENGINE] == "moonshine"
    assert settings.apply_to(config).asr_engine == config.asr_engine == "whisper"
    settings.update({SettingKey.ASR_ENGINE: "moonshine"})
    assert settings.apply_to(config).asr_engine == "moonshine"


def test_a_new_model_path_reloads_off_the_gui_thread(qtbot, config, engines, settings, tmp_path) -> None:
    seen: list[tuple[str | None, str]] = []

    def load(cfg, _progress):
        seen.append((cfg.llm_model, threading.current_thread().name))
        return engines

    window = build_app(config, settings, DeviceProvider.none(), load=load)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.session.is_ready, timeout=20_000)
        first = window.session.conversation
        model = str(tmp_path / "other.gguf")
        window.apply_settings({SettingKey.LLM_MODEL: model})
        qtbot.waitUntil(lambda: window.session.is_ready and window.session.conversation is not first, timeout=30_000)
        assert [m for m, _ in seen] == [None, model]
        assert all(name != threading.main_thread().name for _, name in seen)
        assert window.session.conversation.config.llm_model == model
    finally:
        window.close()
