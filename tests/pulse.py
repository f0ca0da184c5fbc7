"""A private PulseAudio daemon for device tests: null sinks as virtual speakers and mics."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# A virtual microphone (user_voice, heard on its monitor) and a virtual speaker (replica_out).
MIC_AND_SPEAKER = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=user_voice sink_properties=device.description=user_voice
load-module module-null-sink sink_name=replica_out sink_properties=device.description=replica_out
set-default-sink replica_out
set-default-source user_voice.monitor
"""


@contextmanager
def pulse_daemon(folder: Path, config: str) -> Iterator[dict[str, str]]:
    """Run ``pulseaudio`` with ``config`` (``{socket}`` is filled in); yields its client environment.

    Skips the test with the reason when PulseAudio is missing or does not start.
    ``PULSE_SERVER`` is set in this process too, so PortAudio's ALSA "pulse"
    device reaches the daemon.
    """
    if not shutil.which("pulseaudio") or not shutil.which("paplay"):
        pytest.skip("pulseaudio/pulseaudio-utils not installed (packaging/setup.sh installs them as root)")
    socket = folder / "native"
    (folder / "default.pa").write_text(config.format(socket=socket))
    env = {**os.environ, "PULSE_SERVER": f"unix:{socket}", "HOME": str(folder), "XDG_RUNTIME_DIR": str(folder)}
    args = ["-n", "-F", str(folder / "default.pa"), "--exit-idle-time=-1", "--daemonize=no", "--use-pid-file=no"]
    daemon = subprocess.Popen(
        ["pulseaudio", *args, "--system=no", "--disallow-exit"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not socket.exists():
        daemon.kill()
        pytest.skip("pulseaudio did not start here")
    saved = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = env["PULSE_SERVER"]
    try:
        yield env
    finally:
        if saved is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = saved
        daemon.terminate()
        daemon.wait(5)
