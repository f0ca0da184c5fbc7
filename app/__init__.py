"""Doppel: an offline conversational replica (ASR -> LLM -> TTS -> face) on the CPU."""

import os

__version__ = "0.1.0"

# CTranslate2 (Whisper) uses an OpenMP thread team that spins while it waits; on two cores
# shared with the LLM, Piper and the face, spinning teams starved each other (the LLM fell
# below 1 token/s). llama.cpp is built without OpenMP (packaging/setup.sh): its own pool
# spins only while a token is computed, so it needs no such setting. Set before any engine
# is imported; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
