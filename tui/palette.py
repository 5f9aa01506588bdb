"""Status colours that stay what they say in every bundled theme and in 16 colours.

Cells are styled with ANSI colour names (``bold red``); Textual turns those into truecolor
through an ANSI palette (its default, Monokai's, has a pinkish red and an orange yellow that a
16-colour terminal such as TERM=screen shows as magenta and red). These palettes keep each
colour nearest its own ANSI slot, so the downgrade keeps red red, and are dark enough (light
themes) or bright enough (dark themes) to read on the theme's background."""

from __future__ import annotations

from rich.color import Color
from rich.color_triplet import ColorTriplet
from rich.terminal_theme import TerminalTheme

DARK = TerminalTheme(
    (18, 18, 18), (220, 220, 220),
    [(40, 40, 40), (235, 65, 60), (80, 200, 90), (225, 195, 55), (90, 140, 240), (200, 110, 220),
     (70, 195, 210), (200, 200, 200)],
    [(120, 120, 120), (255, 95, 90), (120, 230, 120), (250, 225, 90), (130, 170, 255), (230, 140, 240),
     (110, 225, 235), (240, 240, 240)])

LIGHT = TerminalTheme(
    (250, 250, 250), (30, 30, 30),
    [(30, 30, 30), (175, 0, 0), (0, 115, 0), (125, 100, 0), (0, 60, 175), (130, 0, 130),
     (0, 110, 120), (90, 90, 90)],
    [(80, 80, 80), (200, 20, 20), (0, 135, 0), (140, 115, 0), (30, 80, 200), (150, 30, 150),
     (0, 125, 135), (60, 60, 60)])


# Bundled light themes whose grey (dim) text is too faint on their background: a darker
# foreground of the theme's own family (solarized base02) keeps dim text at 3:1 or more.
FOREGROUNDS = {"solarized-light": "#073642"}


def tune_themes(app: object) -> None:
    """Re-register the bundled themes named in FOREGROUNDS with their darker foreground."""
    from dataclasses import replace

    themes = getattr(app, "available_themes", {})
    for name, fg in FOREGROUNDS.items():
        theme = themes.get(name)
        if theme is not None:
            app.register_theme(replace(theme, foreground=fg))  # type: ignore[attr-defined]


def luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG contrast ratio of two colours (1 to 21)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def triplet(color: Color) -> ColorTriplet:
    assert color.triplet is not None
    return color.triplet
