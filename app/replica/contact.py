"""A contact sheet of the replica's mouth through one sentence: what a lip-reader would be shown.

One tile per phoneme (at its middle), cropped around the mouth and labelled
with the phoneme Piper spoke there, so rounding, spreading, closures, teeth
and tongue can be checked by eye against the sound.
"""

from __future__ import annotations

import cv2
import numpy as np

from app.core.engines import SpeechChunk
from app.replica import measure
from app.replica.replica import Replica

_SKIP = frozenset(" ^$.,?!;:ˈˌːˑ")
_ASCII = {"θ": "th", "ð": "dh", "ʃ": "sh", "ʒ": "zh", "ŋ": "ng", "ɹ": "r", "ɾ": "t", "ʊ": "U", "ɪ": "I", "ə": "uh",
          "ɐ": "6", "ʌ": "V", "ɛ": "E", "æ": "ae", "ɑ": "A", "ɔ": "O", "ɚ": "er", "ɜ": "3", "ᵻ": "I", "ɡ": "g",
          "ʔ": "?"}  # fmt: skip


def contact_sheet(replica: Replica, chunks: list[SpeechChunk], columns: int = 8, zoom: float = 1.5) -> np.ndarray:
    """BGR image: the mouth at the middle of every phoneme of the chunks, spoken back to back."""
    speech = measure.push(replica, chunks)
    p, iod = replica.landmarks, replica.face.iod
    cx, cy = p[48:68].mean(axis=0)
    x0, x1 = int(cx - 0.75 * iod), int(cx + 0.75 * iod)
    y0, y1 = int(cy - 0.45 * iod), int(cy + 0.6 * iod)
    tiles = []
    for symbol, a, b in speech.phonemes:
        if symbol in _SKIP:
            continue
        frame = replica.render(measure.T0 + round((a + b) / 2 * 1e9)).image[y0:y1, x0:x1]
        tile = cv2.resize(frame, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
        label = _ASCII.get(symbol, symbol if symbol.isascii() else "-")
        cv2.putText(tile, label, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(tile, label, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (60, 230, 255), 2, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        raise ValueError("the speech has no phonemes to show")
    blank = np.full_like(tiles[0], 24)
    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    return np.vstack([np.hstack(row + [blank] * (columns - len(row))) for row in rows])
