"""Small pure helpers for tests (no fakes of engines here)."""

from app.bench.questions import word_error_rate

__all__ = ["word_error_rate"]
