"""Concrete engines behind the protocols in ``app.core.engines``."""
