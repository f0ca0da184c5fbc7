"""The window: call view on the left, transcript and text box on the right, controls below.

The window only presents: it receives a ``Session`` (the pipeline behind it)
and the ``EventBridge`` through its constructor, connects their signals to
widgets and turns keys and clicks into session commands.

Keys: H toggles the HUD, Esc stops the replica, Space held is push-to-talk
(H and Space are left alone while a text field has the focus).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Slot
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.config import Config
from app.ui.bridge import EventBridge
from app.ui.gates import MicMode
from app.ui.hud import HudModel
from app.ui.session import Session
from app.ui.settings import AppSettings, SettingKey
from app.ui.widgets.first_run import FirstRunGuide
from app.ui.widgets.settings_dialog import SettingsDialog
from app.ui.widgets.transcript import TranscriptView
from app.ui.widgets.video import VideoView

MODES = ((MicMode.HANDS_FREE, "Hands-free"), (MicMode.PUSH_TO_TALK, "Push-to-talk (hold Space)"))


class MainWindow(QMainWindow):
    def __init__(self, session: Session, bridge: EventBridge, settings: AppSettings, base_config: Config) -> None:
        super().__init__()
        self.session, self.bridge, self.settings, self.base_config = session, bridge, settings, base_config
        self.core_state = "idle"
        self.setWindowTitle("Doppel")
        self.resize(1280, 760)
        self.hud = HudModel()
        self.video = VideoView(self.hud)
        self.video.hud_visible = settings.flag(SettingKey.HUD_VISIBLE)
        self.transcript = TranscriptView()
        self.input = QLineEdit()
        self.input.setPlaceholderText("Type a message and press Enter")
        self.send_button = QPushButton("Send")
        self.banner = QLabel()
        self.banner_button = QPushButton("Devices…")
        self.mode = QComboBox()
        for mode, label in MODES:
            self.mode.addItem(label, mode.value)
        self.mute = QPushButton("Mute mic")
        self.mute.setCheckable(True)
        self.stop_button = QPushButton("Stop  (Esc)")
        self.hud_button = QPushButton("HUD  (H)")
        self.hud_button.setCheckable(True)
        self.settings_button = QPushButton("Settings…")
        self.status = QLabel()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(False)
        self.progress.setFixedWidth(160)
        self._build_layout()
        self._restore_controls()
        self._connect()
        self._apply_persona()
        self.setStyleSheet(STYLE)
        self.guide = FirstRunGuide.show_once(self.centralWidget(), settings)  # None once dismissed
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    # --- layout -----------------------------------------------------------------

    def _build_layout(self) -> None:
        banner = QFrame(objectName="banner")
        row = QHBoxLayout(banner)
        row.setContentsMargins(14, 6, 8, 6)
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.TextFormat.PlainText)
        row.addWidget(self.banner, 1)
        row.addWidget(self.banner_button)
        self.banner_frame = banner
        banner.hide()

        side = QFrame(objectName="side")
        side.setFixedWidth(380)
        col = QVBoxLayout(side)
        col.setContentsMargins(12, 12, 12, 12)
        title = QLabel("Transcript", objectName="title")
        col.addWidget(title)
        col.addWidget(self.transcript, 1)
        entry = QHBoxLayout()
        entry.addWidget(self.input, 1)
        entry.addWidget(self.send_button)
        col.addLayout(entry)

        middle = QHBoxLayout()
        middle.setContentsMargins(0, 0, 0, 0)
        middle.setSpacing(0)
        middle.addWidget(self.video, 1)
        middle.addWidget(side)

        bar = QFrame(objectName="controls")
        controls = QHBoxLayout(bar)
        controls.setContentsMargins(14, 8, 14, 8)
        for widget in (self.mode, self.mute, self.stop_button, self.hud_button, self.settings_button):
            widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space stays push-to-talk, not "click"
            controls.addWidget(widget)
        controls.addStretch(1)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        controls.addWidget(self.status)
        controls.addWidget(self.progress)

        root = QWidget()
        layout = QVBoxLayout(root)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(banner)
        layout.addLayout(middle, 1)
        layout.addWidget(bar)
        self.setCentralWidget(root)

    def _restore_controls(self) -> None:
        self.mode.setCurrentIndex(max(0, self.mode.findData(self.settings.text(SettingKey.MIC_MODE))))
        self.mute.setChecked(self.settings.flag(SettingKey.MUTED))
        self.mute.setText("Unmute mic" if self.mute.isChecked() else "Mute mic")
        self.hud_button.setChecked(self.video.hud_visible)
        geometry = self.settings.text(SettingKey.WINDOW_GEOMETRY)
        if geometry:
            self.restoreGeometry(bytes.fromhex(geometry))

    def _connect(self) -> None:
        b, s = self.bridge, self.session
        b.state_changed.connect(self._on_state)
        b.user_said.connect(self.transcript.add_user)
        b.token.connect(self.transcript.add_token)
        b.reply_finished.connect(self.transcript.finish_reply)
        b.interrupted.connect(self.transcript.mark_interrupted)
        b.metrics.connect(self._on_metrics)
        b.error.connect(lambda source, msg: self.transcript.add_note(f"{source}: {msg}", error=True))
        s.replica_frames.ready.connect(self._on_replica_frame)
        self.video.tile_resized.connect(s.set_tile_side)
        s.camera_frames.ready.connect(self._on_camera_frame)
        s.loading.connect(self._on_loading)
        s.ready.connect(self._on_ready)
        s.load_failed.connect(self._on_load_failed)
        s.device_status.connect(self._on_device_status)
        s.presence_changed.connect(lambda _p: self._show_state())
        s.greeted.connect(self._on_greeting)
        s.notice.connect(self.transcript.add_note)
        self.input.returnPressed.connect(self.send)
        self.send_button.clicked.connect(self.send)
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.mute.toggled.connect(self._on_mute)
        self.stop_button.clicked.connect(self.session.stop)
        self.hud_button.toggled.connect(self._set_hud)
        self.settings_button.clicked.connect(self.open_settings)
        self.banner_button.clicked.connect(self.open_settings)

    # --- slots ------------------------------------------------------------------------

    @Slot()
    def send(self) -> None:
        if self.session.say(self.input.text()):
            self.input.clear()

    @Slot()
    def _on_replica_frame(self) -> None:
        image = self.session.replica_frames.take()
        if image is not None:
            self.video.set_frame(image)

    @Slot()
    def _on_camera_frame(self) -> None:
        image = self.session.camera_frames.take()
        if image is not None:
            self.video.set_preview(image)

    @Slot(str)
    def _on_state(self, state: str) -> None:
        self.core_state = state
        self._show_state()

    def _show_state(self) -> None:
        """The core's state, refined by what the microphone gate knows (muted, away, no mic)."""
        state, mic = self.core_state, self.session.mic
        if state == "listening" and not mic.is_open:
            if mic.device is None:
                state = "idle"
            elif mic.muted:
                state = "muted"
            elif mic.mode is MicMode.PUSH_TO_TALK:
                state = "push_to_talk"
            else:
                state = "away"
        self.video.set_state(state)

    @Slot(str)
    def _on_greeting(self, text: str) -> None:
        self.transcript.expect_greeting = text

    @Slot(int, dict)
    def _on_metrics(self, turn_id: int, values: dict) -> None:
        self.hud.update(turn_id, values)
        self.video.hud_changed()

    @Slot(str, float)
    def _on_loading(self, message: str, fraction: float) -> None:
        self.progress.show()
        self.progress.setValue(round(fraction * 100))
        self.status.setText(message)
        self.video.set_notice(message, fraction)

    @Slot()
    def _on_ready(self) -> None:
        self.progress.hide()
        duplex = self.session.duplex
        self.status.setText("Models ready" + (f" · {duplex.description}" if duplex is not None else ""))
        self.video.set_notice("")
        self._show_state()

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self.progress.hide()
        self.status.setText("Models failed to load")
        self.video.set_notice("Models failed to load — see the transcript")
        self.transcript.add_note(f"Could not load the models: {message}", error=True)

    @Slot(str, str)
    def _on_device_status(self, kind: str, message: str) -> None:
        problems = [m for m in self.session.status.values() if m]
        self.banner.setText("   ·   ".join(problems))
        self.banner_frame.setVisible(bool(problems))
        if kind == "camera":
            self.video.preview_note = "Waiting for the camera…" if not message else "Camera off"
            if message:
                self.video.set_preview(None)
        self._show_state()

    def _on_mode(self, _index: int) -> None:
        self.settings.set(SettingKey.MIC_MODE, self.mode.currentData())
        self.session.apply_mic_settings()
        self._show_state()

    def _on_mute(self, muted: bool) -> None:
        self.mute.setText("Unmute mic" if muted else "Mute mic")
        self.settings.set(SettingKey.MUTED, muted)
        self.session.apply_mic_settings()
        self._show_state()

    def _set_hud(self, visible: bool) -> None:
        if visible != self.video.hud_visible:
            self.video.toggle_hud()
            self.video.hud_changed()
        self.settings.set(SettingKey.HUD_VISIBLE, visible)

    def toggle_hud(self) -> None:
        self.hud_button.setChecked(not self.hud_button.isChecked())

    def _apply_persona(self) -> None:
        name = self.session.config.persona_name
        self.video.persona = name
        self.transcript.persona = name
        self.setWindowTitle(f"Doppel — {name}")

    @Slot()
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self.session.devices, self.base_config, self)
        if dialog.exec():
            self.apply_settings(dialog.values())

    def apply_settings(self, values: dict[SettingKey, bool | str]) -> None:
        """Store new settings and apply what changed (the dialog's OK, or tests)."""
        changed = self.settings.update(values)
        if changed:
            self.session.apply_settings(changed, self.settings.apply_to(self.base_config))
            self._apply_persona()
        self.session.retry_devices(skip=changed)  # the same device picked again after a replug
        self._show_state()

    # --- keys -------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            return False
        if not isinstance(watched, QWidget) or watched.window() is not self:
            return False
        return self.handle_key(event, watched)  # type: ignore[arg-type]

    def handle_key(self, event: QKeyEvent, target: QWidget | None) -> bool:
        """True when the key was ours (H, Space, Esc); ``target`` is the widget the key goes to."""
        pressed = event.type() == QEvent.Type.KeyPress
        typing = isinstance(target, QLineEdit) or (isinstance(target, QPlainTextEdit) and not target.isReadOnly())
        key = event.key()
        if key == Qt.Key.Key_Escape:
            if pressed:
                self.session.stop()
            return True
        if typing:
            return False
        if key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self.session.set_talk(pressed)
                self._show_state()
            return True
        if key == Qt.Key.Key_H:
            if pressed and not event.isAutoRepeat():
                self.toggle_hud()
            return True
        return False

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.ActivationChange and not self.isActiveWindow() and self.session.mic.talk_pressed:
            self.session.set_talk(False)  # Space released elsewhere: never leave push-to-talk open
            self._show_state()
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        self.settings.set(SettingKey.WINDOW_GEOMETRY, bytes(self.saveGeometry().data()).hex())
        self.settings.sync()
        self.hide()  # gone at once for the user, even if a model load must finish first
        self.session.shutdown()
        super().closeEvent(event)


STYLE = """
QMainWindow, QWidget { background: #0e1116; color: #dde3ea; font-size: 13px; }
QFrame#side { background: #131820; border-left: 1px solid #1f2630; }
QFrame#controls { background: #131820; border-top: 1px solid #1f2630; }
QFrame#banner { background: #3a2a12; border-bottom: 1px solid #6b4a16; }
QFrame#banner QLabel { background: transparent; color: #ffd9a0; }
QLabel#title { font-size: 14px; font-weight: 600; color: #aab4c0; padding: 2px 2px 6px 2px; background: transparent; }
QPlainTextEdit { background: #0f1319; border: 1px solid #1f2630; border-radius: 8px; padding: 6px;
                 font-size: 13.5px; selection-background-color: #2b4a7a; }
QLineEdit { background: #1a2029; border: 1px solid #2a3340; border-radius: 8px; padding: 7px 10px; }
QLineEdit:focus { border-color: #4a7fd0; }
QPushButton, QComboBox { background: #1d2430; border: 1px solid #2a3340; border-radius: 8px; padding: 6px 12px; }
QPushButton:hover, QComboBox:hover { background: #243040; }
QPushButton:checked { background: #2b4a7a; border-color: #4a7fd0; }
QLabel { background: transparent; color: #9aa6b4; }
QProgressBar { background: #1d2430; border: none; border-radius: 3px; height: 6px; }
QProgressBar::chunk { background: #5aa0ff; border-radius: 3px; }
"""
