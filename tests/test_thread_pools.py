"""Engines' thread pools that the CPU plan fixes at start-up (app/__init__.py, app/config.py)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_numpy_starts_no_polling_blas_worker_unless_the_user_asks() -> None:
    """OpenBLAS's worker polled beside the LLM after every matrix product; Doppel keeps products on one thread."""
    probe = (
        "import os, app, numpy; a = numpy.ones((300, 300)); a @ a; "
        "print(len(os.listdir('/proc/self/task')), os.environ['OPENBLAS_NUM_THREADS'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}

    def threads_and_setting(env: dict[str, str]) -> list[str]:
        run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        return run.stdout.split()

    assert threads_and_setting(env) == ["1", "1"]  # the main thread only
    # The user's own setting wins: a worker beside the main thread.
    assert threads_and_setting({**env, "OPENBLAS_NUM_THREADS": "2"}) == ["2", "2"]
