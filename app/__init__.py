"""Doppel: an offline conversational replica (ASR -> LLM -> TTS -> face) on the CPU."""

import os

__version__ = "0.1.0"

# llama.cpp and CTranslate2 use OpenMP thread teams that spin while they wait.
# On two cores shared with Piper, the replica and the GUI, spinning threads
# starved each other: `doppel bench` saw the LLM collapse to <1 token/s (p90
# end of speech -> first audio 3.6 s); sleeping waits gave p90 1.6 s at the
# cost of ~30% raw TPS on an idle machine (a short spin, GOMP_SPINCOUNT=20000,
# measured worse in the pipeline: p50 2.0 s). Set before any engine is imported;
# an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
