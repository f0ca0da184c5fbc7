"""The first-run guide: one card over the window, the first time it opens, until it is dismissed.

A newcomer sees a face and a wall of numbers and does not know whether to
speak, press something or type.  The card answers three questions (how do I
talk, what do the numbers mean, how do I make it mine) and is never shown
again once dismissed: the choice is kept in the app's settings (QSettings).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QFrame, QLabel, QPushButton, QVBoxLayout, QWidget

from app.ui.settings import AppSettings, SettingKey

ACCENT = "#5aa0ff"
CARD_WIDTH, CARD_MARGIN = 600, 28
SECTIONS = (
    (
        "Talk",
        "In <b>Hands-free</b> mode (the menu at the bottom left) just speak: Doppel answers when you pause. "
        "Prefer a key? Choose <b>Push-to-talk</b> and hold <b>Space</b> while you speak. "
        "Talk over the replica to interrupt it, <b>Esc</b> stops it, and the box on the right takes typing.",
    ),
    (
        "The numbers",
        "The HUD at the top left (<b>H</b> shows or hides it) times every turn.<br>"
        "<b>20/TPS + TTFT</b> is the language model's share of the wait: "
        "its time to the first token plus the 20 tokens speech needs to begin, at TPS tokens per second.",
    ),
    (
        "Your own replica",
        "<b>Settings… → Persona</b> gives it a name, a personality (the system prompt) and a voice; "
        "<b>Models</b> swaps the language model. A talking clip of your own photo: "
        '<code>doppel render --face photo.jpg --text "Hi!" --out clip.mp4</code>',
    ),
)


def guide_html() -> str:
    """The card's text (rich text, fixed content: nothing from the user is interpolated)."""
    parts = [
        f"<p style='margin-bottom:10px'><span style='color:{ACCENT};font-weight:600'>{title}</span><br>{body}</p>"
        for title, body in SECTIONS
    ]
    return "".join(parts)


class FirstRunGuide(QFrame):
    """A dimmed backdrop over ``parent`` with the guide's card in the middle; follows the parent's size."""

    def __init__(self, parent: QWidget, settings: AppSettings) -> None:
        super().__init__(parent)
        self.settings = settings
        self.setObjectName("firstRun")
        self.setStyleSheet(GUIDE_STYLE)  # before the labels are measured: their font comes from it
        card = QFrame(self, objectName="firstRunCard")
        card.setFixedWidth(CARD_WIDTH)
        title = QLabel("Welcome to Doppel", card, objectName="firstRunTitle")
        body = QLabel(guide_html(), card, objectName="firstRunBody")
        body.setTextFormat(Qt.TextFormat.RichText)
        body.setWordWrap(True)
        # A wrapped rich-text label under-reports its height inside a centring layout: size it for its width.
        body.setFixedWidth(CARD_WIDTH - 2 * CARD_MARGIN)
        body.ensurePolished()
        body.setMinimumHeight(body.heightForWidth(body.width()))
        self.body = body
        self.dismiss_button = QPushButton("Got it", card)
        # Keys stay the window's (Space is push-to-talk, not "click"), as for every other control.
        self.dismiss_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.dismiss_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.dismiss_button.clicked.connect(self.dismiss)
        note = QLabel("Shown once. Everything runs on this computer.", card, objectName="firstRunNote")
        inner = QVBoxLayout(card)
        inner.setContentsMargins(CARD_MARGIN, 22, CARD_MARGIN, 20)
        inner.setSpacing(10)
        inner.addWidget(title)
        inner.addWidget(body)
        inner.addWidget(note)
        inner.addWidget(self.dismiss_button, 0, Qt.AlignmentFlag.AlignRight)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        outer.addWidget(card, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addStretch(1)
        parent.installEventFilter(self)
        self.setGeometry(parent.rect())
        self.raise_()

    @classmethod
    def show_once(cls, parent: QWidget, settings: AppSettings) -> FirstRunGuide | None:
        """The guide over ``parent``, unless the user already dismissed it once."""
        if settings.flag(SettingKey.FIRST_RUN_GUIDE_SEEN):
            return None
        return cls(parent, settings)

    def dismiss(self) -> None:
        """Hide for good: written through at once, so a crash right after still remembers it."""
        self.settings.set(SettingKey.FIRST_RUN_GUIDE_SEEN, True)
        self.hide()
        parent = self.parentWidget()
        if parent is not None:
            parent.removeEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and watched is self.parentWidget():
            self.setGeometry(self.parentWidget().rect())
        return False

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(6, 8, 12, 185))  # the window stays visible, dimmed, behind
        painter.end()


GUIDE_STYLE = f"""
QFrame#firstRun {{ background: transparent; }}
QFrame#firstRunCard {{ background: #151b24; border: 1px solid #2c3746; border-radius: 14px; }}
QLabel#firstRunTitle {{ font-size: 20px; font-weight: 600; color: #eef2f6; background: transparent; }}
QLabel#firstRunBody {{ font-size: 14px; color: #c9d2dc; background: transparent; }}
QLabel#firstRunNote {{ font-size: 12px; color: #7d8896; background: transparent; }}
QFrame#firstRunCard QPushButton {{ background: #2b4a7a; border: 1px solid {ACCENT}; border-radius: 8px;
                                  padding: 7px 22px; color: #eef2f6; font-weight: 600; }}
QFrame#firstRunCard QPushButton:hover {{ background: #335a94; }}
"""
