"""Columns share the terminal's width by their content: every column gets its natural width
(its widest cell or label) when they all fit; otherwise the widest columns give way first,
none below its minimum. At 120 columns nothing that fits is cut."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.widgets import DataTable


def natural(label: str, cells: Iterable[Text | str], cap: int = 200) -> int:
    """The width a column needs for its label and every cell (at most ``cap``)."""
    width = len(label)
    for c in cells:
        width = max(width, c.cell_len if isinstance(c, Text) else len(c))
    return min(width, cap)


def share(columns: Sequence[tuple[int, int]], available: int, pad: int = 2) -> list[int]:
    """Widths for columns given as (minimum, natural) so that the widths plus ``pad`` cells per
    column fit ``available``: natural widths when they fit; else one cap for the widest
    columns, as high as fits (spare cells go to the capped columns, left first), never below
    a column's minimum."""
    nat = [max(1, n) for _, n in columns]
    low = [max(1, min(m, n)) for (m, _), n in zip(columns, nat)]
    budget = available - pad * len(columns)
    if sum(nat) <= budget:
        return nat
    if sum(low) >= budget:
        return low

    def total(cap: int) -> int:
        return sum(min(n, max(lo, cap)) for lo, n in zip(low, nat))

    lo_cap, hi_cap = 0, max(nat)
    while lo_cap < hi_cap:  # the largest cap that fits
        mid = (lo_cap + hi_cap + 1) // 2
        if total(mid) <= budget:
            lo_cap = mid
        else:
            hi_cap = mid - 1
    widths = [min(n, max(lo, lo_cap)) for lo, n in zip(low, nat)]
    spare = budget - sum(widths)
    for i, n in enumerate(nat):
        if spare <= 0:
            break
        if widths[i] < n:
            widths[i] += 1
            spare -= 1
    return widths


def fill_table(table: DataTable, columns: Sequence[tuple[str, str, int]], rows: Sequence[tuple[str, Sequence[Text]]],
               available: int) -> None:
    """(Re)fill a DataTable: ``columns`` are (key, label, minimum width), each row is (key,
    cells); widths by content within ``available`` cells (DataTable pads 1 cell each side)."""
    widths = share([(minimum, max(minimum, natural(label, [r[1][i] for r in rows])))
                    for i, (_, label, minimum) in enumerate(columns)], available)
    current = [(str(c.key.value), c.width) for c in table.columns.values()]
    if current != [(key, w) for (key, _, _), w in zip(columns, widths)]:
        table.clear(columns=True)
        for (key, label, _), w in zip(columns, widths):
            table.add_column(label, key=key, width=w)
    else:
        table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
