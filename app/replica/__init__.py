"""The talking replica: a face made from one photo, animated by speech, drawn with one remap."""

from app.replica.face import NoFaceError
from app.replica.replica import RenderedFrame, Replica

__all__ = ["NoFaceError", "RenderedFrame", "Replica"]
