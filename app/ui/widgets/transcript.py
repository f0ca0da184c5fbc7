"""The live transcript: what the user said or typed and the replica's reply as it streams.

Everything is inserted as plain text through QTextCursor.insertText into a
QPlainTextEdit, so LLM output such as ``<b>`` or ``<img src=...>`` shows
literally and is never interpreted as markup.  Each reply is one block; late
tokens of an earlier turn go to that turn's block, not the end.

Streamed tokens are batched: they are held for at most ``FLUSH_MS`` and
inserted together, so the view (and, under its rounded style-sheet border,
the panels behind it) relays out and repaints at most ~15 times a second
instead of once per token (60+ per second on the GUI thread otherwise).
Anything else that touches or reads the text inserts the held tokens first.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QFont, QTextBlock, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QWidget

LINE_SEPARATOR = "\u2028"  # a line break inside a block (keeps a reply in one block)
FLUSH_MS = 66  # held tokens are shown at most this late (<= 15 updates per second)
# Control characters are shown as their Unicode pictures (ESC as ␛), not obeyed or silently dropped.
_CONTROL_PICTURES = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)} | {0x7F: 0x2421}


def _fmt(colour: QColor, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setForeground(colour)
    if bold:
        fmt.setFontWeight(QFont.Weight.DemiBold)
    fmt.setFontItalic(italic)
    return fmt


USER_LABEL = _fmt(QColor(120, 200, 150), bold=True)
REPLICA_LABEL = _fmt(QColor(120, 175, 255), bold=True)
BODY = _fmt(QColor(222, 228, 235))
NOTE = _fmt(QColor(140, 148, 160), italic=True)
ERROR = _fmt(QColor(255, 140, 120))


class TranscriptView(QPlainTextEdit):
    """Read-only, plain-text conversation log with streaming replies."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        self.setMaximumBlockCount(2000)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.persona = "Replica"
        self.expect_greeting = ""  # the next typed message with this text was sent by the camera, not typed
        self._reply_blocks: dict[int, QTextBlock] = {}
        self._streamed: set[int] = set()
        self._held: dict[int, list[str]] = {}  # turn id -> tokens not inserted yet
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_MS)
        self._flush_timer.timeout.connect(self.flush)

    # --- appending ----------------------------------------------------------------

    def _new_block(self) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if not self.document().isEmpty():
            cursor.insertBlock()
        return cursor

    def _scroll(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    @staticmethod
    def _clean(text: str) -> str:
        text = text.replace("\r\n", "\n").translate(_CONTROL_PICTURES)
        return text.replace("\n", LINE_SEPARATOR)

    def add_user(self, turn_id: int, text: str, spoken: bool) -> None:
        if not text.strip():
            return
        self.flush()
        cursor = self._new_block()
        if not spoken and self.expect_greeting and text.strip() == self.expect_greeting.strip():
            self.expect_greeting = ""
            cursor.insertText("(you appeared on camera)", NOTE)
        else:
            cursor.insertText("You (voice)  " if spoken else "You  ", USER_LABEL)
            cursor.insertText(self._clean(text.strip()), BODY)
        self._scroll()

    def add_token(self, turn_id: int, text: str) -> None:
        """Hold a streamed token; it is shown with the others of its batch (``flush``)."""
        self._held.setdefault(turn_id, []).append(text)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def flush(self) -> None:
        """Insert the held tokens, one insertion per turn, and scroll once."""
        self._flush_timer.stop()
        held, self._held = self._held, {}
        inserted = False
        for turn_id, parts in held.items():
            text = "".join(parts)
            if turn_id not in self._streamed:
                text = text.lstrip()
                if not text:
                    continue
                self._streamed.add(turn_id)
            self._reply_cursor(turn_id).insertText(self._clean(text), BODY)
            inserted = True
        if inserted:
            self._scroll()

    def toPlainText(self) -> str:
        self.flush()
        return super().toPlainText()

    def finish_reply(self, turn_id: int, heard: str) -> None:
        """A turn ended: show the reply if nothing streamed (e.g. remote backend errors)."""
        self.flush()
        if turn_id not in self._streamed and heard.strip():
            self._reply_cursor(turn_id).insertText(self._clean(heard.strip()), BODY)
            self._streamed.add(turn_id)
            self._scroll()

    def mark_interrupted(self, turn_id: int) -> None:
        self.flush()
        if turn_id in self._reply_blocks:
            self._reply_cursor(turn_id).insertText("  — interrupted", NOTE)

    def add_note(self, text: str, error: bool = False) -> None:
        self.flush()
        self._new_block().insertText(self._clean(text), ERROR if error else NOTE)
        self._scroll()

    def _reply_cursor(self, turn_id: int) -> QTextCursor:
        block = self._reply_blocks.get(turn_id)
        if block is None or not block.isValid():
            cursor = self._new_block()
            cursor.insertText(f"{self.persona}  ", REPLICA_LABEL)
            self._reply_blocks[turn_id] = cursor.block()
            for old in [t for t in self._reply_blocks if t < turn_id - 50]:
                del self._reply_blocks[old]
            return cursor
        cursor = QTextCursor(block)
        cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock)
        return cursor

    def reply_text(self, turn_id: int) -> str:
        """The reply shown for a turn, without its label (for tests)."""
        self.flush()
        block = self._reply_blocks.get(turn_id)
        if block is None:
            return ""
        return block.text().removeprefix(f"{self.persona}  ").replace(LINE_SEPARATOR, "\n")
