"""The desktop app (Qt): window, HUD, settings and the bridge from core events to widgets."""

from app.ui.qt_compat import guard_refcounts

GUARDED = guard_refcounts()  # before any widget exists: see qt_compat for why
