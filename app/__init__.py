"""Doppel: an offline conversational replica (ASR -> LLM -> TTS -> face) on the CPU."""

import os

__version__ = "0.1.0"

# CTranslate2 (Whisper) uses an OpenMP thread team that spins while it waits; on two cores
# shared with the LLM, Piper and the face, spinning teams starved each other (the LLM fell
# below 1 token/s). llama.cpp is built without OpenMP (packaging/setup.sh): its own pool
# spins only while a token is computed, so it needs no such setting. Set before any engine
# is imported; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# numpy's OpenBLAS starts a worker per core at import, and after each matrix product (Whisper's mel
# filter bank, for one) that worker polls for more work for a while instead of sleeping. On two cores it
# took 3.8 CPU s of a 45 s bench session, much of it right beside the LLM's first evaluation after the
# final transcript: TTFT p50 62-65 -> 46-47 ms with one thread (docs/cpu-plan.md). Doppel's products
# are small enough for one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
