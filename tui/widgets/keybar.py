"""A footer that wraps: every binding of the screen stays visible at 80 columns (Textual's
Footer is one scrolling line). Generated from the screen's active bindings, like Footer."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Static


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: auto;
        max-height: 3;
        padding: 0 1;
        background: $footer-background;
        color: $footer-description-foreground;
    }
    """

    def __init__(self) -> None:
        super().__init__("", markup=False)
        self._items: list[tuple[str, str, bool]] = []  # (keys, description, enabled)
        self._lines = 0  # the height set by _fit

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)
        self.refresh_keys()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self.refresh_keys)

    def refresh_keys(self) -> None:
        if not self.is_attached or not self.is_mounted:
            return  # queued after refresh, but the screen was dismissed meanwhile
        app = self.app
        seen: dict[str, tuple[list[str], str, bool]] = {}
        palette = None
        for key, active in self.screen.active_bindings.items():
            b = active.binding
            if key == app.COMMAND_PALETTE_BINDING:
                palette = (app.get_key_display(b), b.description or "palette", active.enabled)
                continue
            if not b.show:
                continue
            keys, desc, enabled = seen.get(b.action, ([], b.description, active.enabled))
            display = app.get_key_display(b)
            if display not in keys:
                keys.append(display)
            seen[b.action] = (keys, desc, enabled)
        help_item = seen.pop("app.help", None)  # a dialog's own ?: shown last, as on the screens
        if help_item is not None:
            seen["app.help"] = help_item
        items = [("/".join(k), d, e) for k, d, e in seen.values()]
        if palette is not None:
            items.append(palette)
        if items != self._items:  # the same keys: no layout of the screen again
            self._items = items
            self._fit()
            self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """The lines the items take at ``width``."""
        return self._text(width).plain.count("\n") + 1

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """The bar's height set to the lines its items take now: ``height: auto`` was worked out
        once, before the bar had its width, and kept one line at 80 columns (the second hidden)."""
        width = self.content_size.width or max(20, self.app.size.width - 2)
        lines = min(3, self._text(width).plain.count("\n") + 1)
        if lines != self._lines:
            self._lines = lines
            self.styles.height = lines

    def render(self) -> Text:
        """Items laid out by hand so a key and its description never part across lines."""
        return self._text(self.content_size.width or max(20, self.size.width - 2))

    def _text(self, width: int) -> Text:
        width = max(20, width)
        colour = self.app.theme_variables.get("footer-key-foreground", "yellow")  # follows `t`
        key_style = Style.parse(f"bold {colour}")
        t = Text(no_wrap=True)
        col = 0
        for keys, desc, enabled in self._items:
            size = len(keys) + 1 + len(desc or "")
            if col and col + 2 + size > width:
                t.append("\n")
                col = 0
            elif col:
                t.append("  ")
                col += 2
            t.append(keys, style=key_style if enabled else Style(dim=True))
            t.append(" " + (desc or ""), style="" if enabled else "dim")
            col += size
        return t
