"""Everything behind the window: models, the conversation, devices, the replica clock, vision.

A ``Session`` lives on the GUI thread but never runs model code there: models
load on an ``EngineLoader`` thread, the conversation runs its own workers,
the replica renders on a ``ReplicaStage`` thread and the camera (with face
detection) on its capture thread.  Device threads report back through this
object's signals, which Qt queues to the GUI thread.

The replica stage belongs to the session rather than to the conversation so
the face is alive while models load and across model reloads; it reports
speaking frames to whichever conversation is current.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import cv2
import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from app.compose import Engines, load_engines
from app.config import Config
from app.core import events as ev
from app.core.conversation import Conversation
from app.core.replica_stage import ReplicaStage
from app.devices.sound import DeviceError
from app.duplex import Duplex, make_duplex
from app.ui.bridge import EventBridge, FrameBridge
from app.ui.devices import Camera, DeviceProvider, choose
from app.ui.gates import MicGate, MicMode, SpeakerSwitch
from app.ui.settings import DEVICE_OFF, MODEL_KEYS, AppSettings, SettingKey
from app.ui.widgets.video import fit_tile
from app.ui.workers import EngineLoader, Job, Loader, start_worker
from app.vision import Sighting, VisionStage

_log = logging.getLogger(__name__)
PREVIEW_WIDTH = 240
LONG_TEXT_CHARS = 1000  # typed text longer than this is checked against the model's context
# The LLM's start-up prefill cannot be cancelled; wait for it rather than leave a thread using the model.
STOP_TIMEOUT_S = 10.0
DEVICE_SETTING = {"microphone": SettingKey.MICROPHONE, "speaker": SettingKey.SPEAKER, "camera": SettingKey.CAMERA}


class Session(QObject):
    loading = Signal(str, float)  # message, fraction
    ready = Signal()
    load_failed = Signal(str)
    device_status = Signal(str, str)  # kind, message ("" = working)
    presence_changed = Signal(bool)
    greeted = Signal(str)  # emitted just before the greeting is sent (so its line can be marked)
    notice = Signal(str)  # something the user should know that is not an error (a message cut to fit)
    _device_lost = Signal(str, str)  # from device threads

    def __init__(
        self,
        config: Config,
        settings: AppSettings,
        devices: DeviceProvider,
        bridge: EventBridge,
        replica: object | None = None,
        load: Loader = load_engines,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.config, self.settings, self.devices, self.bridge = config, settings, devices, bridge
        self.replica = replica
        self._load = load
        self.replica_frames = FrameBridge(self)
        self.camera_frames = FrameBridge(self)
        self.mic = MicGate()
        self.speaker: SpeakerSwitch | None = None
        self.camera: Camera | None = None
        self.engines: Engines | None = None
        self.conversation: Conversation | None = None
        self.vision = VisionStage(self._on_gaze, self._on_presence_thread, self._on_sighting)
        self.sighting: Sighting | None = None
        self.duplex: Duplex | None = None  # how the mic coexists with the speaker (set once models load)
        self.present = False
        self.greeted_once = False
        self.status: dict[str, str] = {}
        self._pending_text: list[str] = []
        self._loader: EngineLoader | None = None
        self._loader_thread: QThread | None = None
        self._closed = False
        self.presence_changed.connect(self._apply_presence)
        self._device_lost.connect(self._on_device_lost)
        self.stage: ReplicaStage | None = None
        if replica is not None:
            on_frame, prepare = self._on_replica_frame, self._prepare_replica_frame
            self.stage = ReplicaStage(replica, on_frame, self._on_speaking_frame, prepare=prepare)  # type: ignore[arg-type]
        self.tile_side = 0  # the video tile's size: frames are scaled to it on the replica thread
        self._watchdog = QTimer(self)
        self._watchdog.setInterval(1000)
        self._watchdog.timeout.connect(self._check_devices)
        self.apply_mic_settings()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the face and the camera now, and load the models in the background."""
        if self.stage is not None:
            self.stage.start()
        self.open_camera()
        self._watchdog.start()
        self.load_models()

    @property
    def is_ready(self) -> bool:
        return self.conversation is not None

    @property
    def is_loading(self) -> bool:
        return self._loader is not None

    def load_models(self) -> None:
        if self._loader is not None:
            return
        self.loading.emit("Loading models…", 0.0)
        loader = EngineLoader(self.config, self._load)
        loader.progress.connect(self.loading)
        loader.loaded.connect(self._on_loaded)
        loader.failed.connect(self._on_load_failed)
        loader.finished.connect(self._on_loader_finished)
        self._loader = loader
        self._loader_thread = start_worker(loader)

    @Slot()
    def _on_loader_finished(self) -> None:
        self._loader, self._loader_thread = None, None

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self.load_failed.emit(message)

    @Slot(object)
    def _on_loaded(self, engines: Engines) -> None:
        if self._closed:
            return
        self.engines = engines
        self.speaker = SpeakerSwitch(engines.tts.sample_rate)  # one per conversation: it stops with it
        self.duplex = make_duplex(self.speaker)  # type: ignore[arg-type]
        conversation = Conversation(
            self.config,
            engines,
            source=self.mic,
            sink=self.speaker,  # type: ignore[arg-type]
            face=self.replica,  # type: ignore[arg-type]
            face_stage=self.stage,
            **self.duplex.conversation_kwargs(),
        )
        self.bridge.attach(conversation.bus)
        bus = conversation.bus
        # A full disk loses the log, not the conversation: say so once, in the transcript.
        conversation.log.on_error = lambda msg: bus.publish(ev.ErrorEvent(0, source="log", message=msg))
        if self.stage is not None:
            self.stage.follow(conversation.cpu)  # the face paints by the conversation's CPU plan
        conversation.start()
        self.conversation = conversation
        self.open_device("speaker")
        self.open_device("microphone")
        self.ready.emit()
        for text in self._pending_text:
            self.say(text)
        self._pending_text.clear()
        if self.present:
            self._maybe_greet()

    def reload_models(self, config: Config) -> None:
        """New model paths: stop the conversation off the GUI thread, then load again."""
        self.config = config
        old, self.conversation = self.conversation, None
        self.bridge.detach()
        if old is None:
            self.load_models()
            return
        self.loading.emit("Stopping the conversation…", 0.0)
        job = Job(lambda: old.shutdown(STOP_TIMEOUT_S))
        job.done.connect(self._after_shutdown)
        start_worker(job)

    @Slot(object)
    def _after_shutdown(self, _ok: object) -> None:
        if not self._closed:
            self.load_models()

    def shutdown(self) -> None:
        """Stop every thread this session started (window close)."""
        self._closed = True
        self._watchdog.stop()
        if self._loader is not None:
            self._loader.abandon()  # the models after the one loading now are skipped
        if self._loader_thread is not None:
            self._loader_thread.wait()  # a model half-loaded cannot be abandoned safely
        self.close_camera()
        if self.conversation is not None:
            self.conversation.shutdown(STOP_TIMEOUT_S)
            self.conversation = None
        self.bridge.detach()
        if self.stage is not None:
            self.stage.stop()

    # --- commands (GUI thread) -----------------------------------------------------------

    def say(self, text: str) -> bool:
        """Send typed text; before the models are ready it waits in line. False if empty."""
        text = text.strip()
        if not text:
            return False
        if self.conversation is None:
            self._pending_text.append(text)
            return True
        if len(text) > LONG_TEXT_CHARS:
            fitted = self.conversation.history.fit(text)
            if fitted != text:
                self.notice.emit(
                    f"Your message has {len(text):,} characters; the model can read about {len(fitted):,}, "
                    "so it gets the beginning and the end. The transcript and the log keep every word."
                )
        self.conversation.say(text)
        return True

    def stop(self) -> None:
        if self.conversation is not None:
            self.conversation.interrupt("stop")

    def set_talk(self, pressed: bool) -> None:
        self.mic.talk_pressed = pressed

    def apply_mic_settings(self) -> None:
        self.mic.mode = MicMode(self.settings.text(SettingKey.MIC_MODE) or MicMode.HANDS_FREE)
        self.mic.muted = self.settings.flag(SettingKey.MUTED)
        self._update_away()

    def apply_settings(self, changed: list[SettingKey], config: Config) -> None:
        """React to settings the user just saved (``config`` already has them applied)."""
        models_changed = any(k in MODEL_KEYS for k in changed)
        old_prompt = self.config.system_prompt
        self.config = config if not models_changed else self.config
        if config.system_prompt != old_prompt and self.conversation is not None:
            self.conversation.set_system_prompt(config.system_prompt)
            self.conversation.config = replace(self.conversation.config, system_prompt=config.system_prompt)
        self.apply_mic_settings()
        for kind, key in DEVICE_SETTING.items():
            if key in changed:
                self.open_camera() if kind == "camera" else self.open_device(kind)
        if models_changed:
            self.reload_models(config)

    # --- devices ------------------------------------------------------------------------------

    def retry_devices(self, skip: list[SettingKey] | tuple[SettingKey, ...] = ()) -> None:
        """Open again every device that is reported missing or failed (the user re-picked it)."""
        for kind, key in DEVICE_SETTING.items():
            if key in skip or not self.status.get(kind) or self.settings.text(key) == DEVICE_OFF:
                continue
            self.open_camera() if kind == "camera" else self.open_device(kind)

    def _report(self, kind: str, message: str) -> None:
        self.status[kind] = message
        self.device_status.emit(kind, message)

    def open_device(self, kind: str) -> None:
        """(Re)open the microphone or speaker from the settings; problems go to ``device_status``."""
        listing = self.devices.list_microphones if kind == "microphone" else self.devices.list_speakers
        device, note = choose(kind, self.settings.text(DEVICE_SETTING[kind]), listing())
        if kind == "speaker" and self.speaker is None:
            return  # opened once the voice (and so its sample rate) is known
        if kind == "speaker" and self.conversation is not None:
            self.conversation.interrupt("speaker changed")  # its queued audio goes with the old device
        try:
            if kind == "microphone":
                on_error = lambda msg: self._device_lost.emit("microphone", msg)  # noqa: E731
                self.mic.attach(None if device is None else self.devices.open_microphone(device, on_error))
            else:
                assert self.speaker is not None
                sink = None if device is None else self.devices.open_speaker(device, self.speaker.sample_rate)
                if sink is not None and hasattr(sink, "on_error"):  # a real device reports its own death
                    sink.on_error = lambda msg: self._device_lost.emit("speaker", msg)  # type: ignore[attr-defined]
                self.speaker.attach(sink)
        except DeviceError as exc:
            note = str(exc)
        self._report(kind, note)

    def open_camera(self) -> None:
        self.close_camera()
        device, note = choose("camera", self.settings.text(SettingKey.CAMERA), self.devices.list_cameras())
        if device is not None:
            on_error = lambda msg: self._device_lost.emit("camera", msg)  # noqa: E731
            try:
                self.camera = self.devices.open_camera(device, self._on_camera_frame, on_error)
                self.camera.start()
            except DeviceError as exc:
                self.camera, note = None, str(exc)
        self._update_away()  # until a face shows up, nobody is there
        self._report("camera", note)

    def close_camera(self) -> None:
        camera, self.camera = self.camera, None
        if camera is not None:
            camera.stop()
        self.camera_frames.take()
        self.present = False
        self._update_away()

    @Slot(str, str)
    def _on_device_lost(self, kind: str, message: str) -> None:
        if kind == "camera":
            self.close_camera()
        elif kind == "microphone":
            self.mic.attach(None)
        elif self.speaker is not None:
            if self.conversation is not None:
                # The reply's queued audio went with the device: end the turn now, or it waits forever.
                self.conversation.interrupt("speaker lost")
            self.speaker.attach(None)
        self._report(kind, message)

    @Slot()
    def _check_devices(self) -> None:
        if self.mic.stalled():
            self._on_device_lost(
                "microphone", "The microphone stopped sending sound (unplugged?). Pick one in Settings."
            )
        if self.speaker is not None and self.speaker.stalled():
            self._on_device_lost("speaker", "The speaker stopped (unplugged?). Pick one in Settings.")

    # --- replica and vision (their own threads) ----------------------------------------------

    @Slot(int)
    def set_tile_side(self, side: int) -> None:
        self.tile_side = side

    def _prepare_replica_frame(self, frame: object) -> object:
        """Replica thread, as the frame is drawn (in a burst too): scaled to the tile, in 32-bit BGRA."""
        return replace(frame, image=fit_tile(frame.image, self.tile_side))  # type: ignore[attr-defined, type-var]

    def _on_replica_frame(self, frame: object) -> None:
        """Replica thread, at the frame's tick: to the GUI (scaled again only if the tile changed meanwhile)."""
        self.replica_frames.push(fit_tile(frame.image, self.tile_side))  # type: ignore[attr-defined]

    def _on_speaking_frame(self, index: int, t_ns: int) -> None:
        conversation = self.conversation
        # Only while this turn's audio is playing: the tail of the previous reply's lip track
        # must not count as the new turn's first frame.
        if conversation is not None and conversation.replica_audible:
            conversation.on_replica_frame(index, t_ns)

    def _on_gaze(self, x: float, y: float) -> None:
        setter = getattr(self.replica, "set_gaze_target", None)
        if setter is not None:
            setter(x, y)

    def _on_sighting(self, sighting: Sighting) -> None:
        self.sighting = sighting

    def _on_presence_thread(self, present: bool) -> None:
        self.presence_changed.emit(present)  # queued to the GUI thread

    def _on_camera_frame(self, image: np.ndarray, t_ns: int) -> None:
        self.vision(image, t_ns)
        gate = self.duplex.barge_in_gate if self.duplex is not None else None
        conversation = self.conversation
        # The mouth gate only judges onsets while the replica is heard; sparing it otherwise
        # saves ~10 ms of CPU per camera frame on a 2-core machine.
        if gate is not None and conversation is not None and conversation.replica_audible:
            box = self.sighting.box if self.sighting is not None else None
            gate.on_frame(image, t_ns, box=box)
        h, w = image.shape[:2]
        scale = PREVIEW_WIDTH / w
        preview = cv2.resize(image, (PREVIEW_WIDTH, round(h * scale)), interpolation=cv2.INTER_AREA)
        sighting = self.sighting
        if sighting is not None and sighting.box is not None:
            x, y, bw, bh = (round(v * scale) for v in sighting.box)
            cv2.rectangle(preview, (x, y), (x + bw, y + bh), (130, 200, 90), 1, cv2.LINE_AA)
        self.camera_frames.push(cv2.cvtColor(cv2.flip(preview, 1), cv2.COLOR_BGR2BGRA))  # mirrored, like a mirror

    @Slot(bool)
    def _apply_presence(self, present: bool) -> None:
        self.present = present and self.camera is not None
        self._update_away()
        if self.present:
            self._maybe_greet()

    def _update_away(self) -> None:
        pause = self.settings.flag(SettingKey.PAUSE_WHEN_AWAY) and self.camera is not None
        self.mic.away = pause and self.mic.mode is MicMode.HANDS_FREE and not self.present

    def _maybe_greet(self) -> None:
        if self.greeted_once or not self.settings.flag(SettingKey.GREET) or self.conversation is None:
            return
        if not self.conversation.idle:
            return
        greeting = self.settings.text(SettingKey.GREETING).strip()
        if greeting:
            self.greeted_once = True
            self.greeted.emit(greeting)
            self.conversation.say(greeting)
