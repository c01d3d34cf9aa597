"""Small charts for the console, drawn on the server as SVG.

No chart library: a dozen bars and a line are a few rectangles and one path. The SVG scales to
its box (viewBox, no fixed size), its colours are CSS classes the console's stylesheet sets from
the admin's own variables (so dark mode follows), and it carries an aria label plus a <title> per
mark, which screen readers and a hover both read.
"""

from collections.abc import Callable, Sequence
from math import floor, log10

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 320, 130  # viewBox units
LEFT, RIGHT, TOP, BOTTOM = 34, 4, 8, 18  # room for the y-axis labels and the x labels


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10ⁿ at or above `value`, so the axis' top label reads cleanly."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** floor(log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _n(coordinate: float) -> str:
    """A coordinate as SVG text: format_html escapes its arguments to strings before formatting,
    so numbers are made text here."""
    return f"{coordinate:.1f}"


def _plain(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def _frame(*, label: str, top: float, columns: Sequence[str], fmt: Callable[[float], str], body: str) -> SafeString:
    """The axes and labels every chart shares, around its marks."""
    plot_bottom = HEIGHT - BOTTOM
    ticks = [0, len(columns) // 2, len(columns) - 1] if len(columns) > 2 else list(range(len(columns)))
    step = (WIDTH - LEFT - RIGHT) / max(len(columns), 1)
    # The last label ends at its column's centre, so it is not cut off at the chart's right edge.
    anchors = {len(columns) - 1: "end"} if len(columns) > 2 else {}
    x_labels = format_html_join(
        "",
        '<text class="kz-axis" x="{}" y="{}" text-anchor="{}">{}</text>',
        ((_n(LEFT + step * (i + 0.5)), HEIGHT - 4, anchors.get(i, "middle"), columns[i]) for i in sorted(set(ticks))),
    )
    return format_html(
        '<svg class="kz-chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}">'
        "<title>{label}</title>"
        '<line class="kz-grid" x1="{left}" x2="{right}" y1="{top}" y2="{top}"/>'
        '<line class="kz-base" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>'
        '<text class="kz-axis" x="{lx}" y="{ty}" text-anchor="end">{top_label}</text>'
        '<text class="kz-axis" x="{lx}" y="{bottom}" text-anchor="end">0</text>'
        "{body}{x_labels}</svg>",
        w=WIDTH, h=HEIGHT, label=label, left=LEFT, right=WIDTH - RIGHT, top=TOP, bottom=plot_bottom,
        lx=LEFT - 3, ty=TOP + 4, top_label=fmt(top), body=mark_safe(body), x_labels=x_labels,  # noqa: S308 - built by format_html
    )  # fmt: skip


def bar_chart(
    *,
    label: str,
    columns: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    fmt: Callable[[float], str] = _plain,
    palette: str = "kz-s",
) -> SafeString:
    """Stacked bars: one column per x label, one segment per (name, values) series, bottom up.

    Series are styled by position (`kz-s0`, `kz-s1` … for the palette `kz-s`), so the legend
    beside the chart uses the same classes."""
    totals = [sum(values[i] for _, values in series) for i in range(len(columns))]
    top = nice_ceiling(max(totals, default=0))
    plot_height = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(columns), 1)
    marks = []
    for i, column in enumerate(columns):
        base = HEIGHT - BOTTOM
        for index, (name, values) in enumerate(series):
            value = values[i]
            if not value:
                continue
            height = plot_height * value / top
            base -= height
            marks.append(
                format_html(
                    '<rect class="{}{}" x="{}" y="{}" width="{}" height="{}"><title>{}: {} {}</title></rect>',
                    palette,
                    index,
                    _n(LEFT + step * i + step * 0.15),
                    _n(base),
                    _n(step * 0.7),
                    _n(height),
                    column,
                    fmt(value),
                    name,
                )
            )
    return _frame(label=label, top=top, columns=columns, fmt=fmt, body="".join(marks))


def line_chart(
    *, label: str, columns: Sequence[str], values: Sequence[float | None], fmt: Callable[[float], str] = _plain
) -> SafeString:
    """A line through the known values, with a dot per value; a gap (None) breaks the line, so a
    day with nothing resolved does not read as a zero."""
    top = nice_ceiling(max((v for v in values if v is not None), default=0))
    plot_height = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(columns), 1)
    path, dots, pen_down = [], [], False
    for i, value in enumerate(values):
        if value is None:
            pen_down = False
            continue
        x, y = LEFT + step * (i + 0.5), HEIGHT - BOTTOM - plot_height * value / top
        path.append(f"{'L' if pen_down else 'M'}{_n(x)} {_n(y)}")
        pen_down = True
        dots.append(
            format_html(
                '<circle class="kz-dot" cx="{}" cy="{}" r="2.5"><title>{}: {}</title></circle>',
                _n(x),
                _n(y),
                columns[i],
                fmt(value),
            )
        )
    line = format_html('<path class="kz-line" d="{}"/>', " ".join(path)) if path else ""
    return _frame(label=label, top=top, columns=columns, fmt=fmt, body=line + "".join(dots))
