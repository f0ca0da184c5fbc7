"""The Qt-free core: events, pipeline, stages, per-turn clock and cancel handle."""
