"""Doppel: an offline conversational replica (ASR -> LLM -> TTS -> face) on the CPU."""

__version__ = "0.1.0"
