"""What machine a bench ran on: the CPU, package versions, load, and the thread settings that matter."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "numpy",
    "onnxruntime",
    "ctranslate2",
    "faster-whisper",
    "llama_cpp_python",
    "piper-tts",
    "opencv-python",
    "soxr",
    "PySide6_Essentials",
)


# They change how llama.cpp's, CTranslate2's and numpy's OpenBLAS threads wait (spin or sleep): record them.
OPENMP_ENV = (
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "OMP_NUM_THREADS",
    "OMP_PROC_BIND",
    "KMP_BLOCKTIME",
    "OPENBLAS_NUM_THREADS",
)


def machine_facts() -> dict:
    """The CPU, the packages and the thread-waiting settings a bench ran with."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "loadavg_start": loadavg(),
        "env": {k: os.environ.get(k) for k in OPENMP_ENV},
    }


def loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
