"""How the app finds and opens its devices; tests pass stand-ins (a WAV as the mic, a video as the camera).

Device ids are names for audio (indices shift when something is plugged in)
and an index or a file path for cameras.  In settings, "" means the system
default and ``DEVICE_OFF`` means the user switched the device off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from app.core.audio_io import AudioSink, AudioSource
from app.devices.camera import CameraSource, ErrorCallback, FrameCallback, list_cameras
from app.devices.sound import DeviceError, MicrophoneSource, SpeakerSink, list_devices
from app.ui.settings import DEVICE_OFF

Listing = Callable[[], list[tuple[str, str]]]  # (id, label)


class Camera(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float = 2.0) -> bool: ...


def _audio_listing(kind: str) -> Listing:
    def listing() -> list[tuple[str, str]]:
        return [(name, name) for _, name in list_devices(kind)]

    return listing


def _open_microphone(device: str, on_error: ErrorCallback) -> AudioSource:
    return MicrophoneSource(device or None, on_error=on_error)


def _open_speaker(device: str, sample_rate: int) -> AudioSink:
    return SpeakerSink(sample_rate, device or None)


def _open_camera(device: str, on_frame: FrameCallback, on_error: ErrorCallback) -> Camera:
    return CameraSource(device, on_frame, on_error)


@dataclass
class DeviceProvider:
    list_microphones: Listing
    list_speakers: Listing
    list_cameras: Listing
    open_microphone: Callable[[str, ErrorCallback], AudioSource]
    open_speaker: Callable[[str, int], AudioSink]
    open_camera: Callable[[str, FrameCallback, ErrorCallback], Camera]

    @classmethod
    def system(cls) -> DeviceProvider:
        """The machine's real devices: PortAudio for sound, OpenCV for the camera."""
        return cls(
            list_microphones=_audio_listing("input"),
            list_speakers=_audio_listing("output"),
            list_cameras=list_cameras,
            open_microphone=_open_microphone,
            open_speaker=_open_speaker,
            open_camera=_open_camera,
        )

    @classmethod
    def none(cls) -> DeviceProvider:
        """A machine with no microphone, speaker or camera."""

        def nothing() -> list[tuple[str, str]]:
            return []

        def refuse(*_args: object) -> object:
            raise DeviceError("no such device")

        return cls(nothing, nothing, nothing, refuse, refuse, refuse)  # type: ignore[arg-type]


KIND_LABELS = {"microphone": "microphone", "speaker": "speaker", "camera": "camera"}
MISSING_HELP = {
    "microphone": "No microphone found: type to talk, or plug one in and pick it in Settings.",
    "speaker": "No speaker found: replies are shown, not heard.",
    "camera": "No camera found: the replica cannot see you (greeting and gaze are off).",
}
OFF_HELP = {
    "microphone": "Microphone is off: type to talk.",
    "speaker": "Speaker is off: replies are shown, not heard.",
    "camera": "Camera is off.",
}


def choose(kind: str, wanted: str, available: list[tuple[str, str]]) -> tuple[str | None, str]:
    """The device id to open for a setting, and a note for the user ("" when all is as asked)."""
    if wanted == DEVICE_OFF:
        return None, OFF_HELP[kind]
    ids = [device_id for device_id, _ in available]
    if wanted and wanted in ids:
        return wanted, ""
    if not ids:
        return None, MISSING_HELP[kind]
    if wanted:
        return ids[0], f"The {KIND_LABELS[kind]} '{wanted}' is not connected; using '{available[0][1]}'."
    return ("" if kind != "camera" else ids[0]), ""  # "": the system's default sound device
