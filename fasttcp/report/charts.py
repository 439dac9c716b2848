"""The report's charts as inline SVG strings: horizontal bars for categories, a
log-scale histogram for RTTs, bars over time for the time series.

Why SVG written here rather than a chart library: the three kinds of chart need ~300
lines; the SVG is a few KiB a chart, renders in any browser (and in a file viewer) with
no JavaScript, cannot fetch anything, and needs no upkeep -- a vendored library would
add hundreds of KiB to every report and a pinned version to follow for security fixes.

Every string put into the SVG goes through `esc` (text and attributes alike): labels
can come from a capture."""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["esc", "hbar_chart", "log_histogram", "time_series", "fmt_count", "fmt_bytes", "fmt_duration",
           "nice_step"]

WIDTH = 760                    # viewBox width of every chart (CSS scales it to the column)
FONT = 12
CHAR_W = 7.0                   # width of a character at FONT, about (to reserve room for labels)
BAR_ROW = 22                   # height of one bar of a bar chart
PLOT_HEIGHT = 170              # plotting area of the histogram and time series
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 30, 38
Y_TICKS = 4
X_TICKS = 8
BAR_COLOUR = "#3b6ea8"
ACCENT = "#c8553d"
GRID = "#e3e6ea"
INK = "#222"
MUTED = "#667"


def esc(s: object) -> str:
    """`s` as text safe inside HTML/SVG text and quoted attributes."""
    return html.escape(str(s), quote=True)


def fmt_count(v: float) -> str:
    """1234 -> '1,234'; 2.5e6 -> '2.5M' (compact above a million); fractions to 3 places."""
    if v >= 1e6:
        for div, unit in ((1e9, "G"), (1e6, "M")):
            if v >= div:
                return f"{v / div:.3g}{unit}"
    if v != int(v):
        return f"{v:,.3g}" if v < 1000 else f"{v:,.0f}"
    return f"{int(v):,}"


def fmt_bytes(v: float) -> str:
    """Bytes in B, KiB, MiB, GiB, TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if v < 1024:
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"


def _sig3(v: float) -> str:
    """`v` to 3 significant digits, never in exponent notation."""
    v = float(f"{v:.3g}")             # round first: 0.9996 is 1.00, not 1.000
    if v == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f}"


# (upper bound in microseconds, divisor, unit) of fmt_duration: a bound sits where the
# value would round up to the next unit (999.5 us prints as 1.00 ms, not 1000 us)
_DURATION_UNITS = ((999.5, 1.0, "µs"), (999_500.0, 1e3, "ms"), (59.95e6, 1e6, "s"), (3599.5e6, 60e6, "min"))


def fmt_duration(us: float) -> str:
    """Microseconds to 3 significant digits in a readable unit: '850 µs', '12.3 ms',
    '1.00 s', '3.50 min', '2.10 h'."""
    for bound, div, unit in _DURATION_UNITS:
        if us < bound:
            return f"{_sig3(us / div)} {unit}"
    return f"{_sig3(us / 3600e6)} h"


def _round_duration(us: float) -> str:
    """fmt_duration without trailing zeros, for round bin widths: '10 ms', '500 µs'."""
    number, unit = fmt_duration(us).split(" ")
    return f"{number.rstrip('0').rstrip('.') if '.' in number else number} {unit}"


def nice_step(span: float, target: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most about `target`
    ticks over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5):
        if m * mag >= raw * (1 - 1e-9):
            return m * mag
    return 10 * mag


def _svg(name: str, title: str, height: float, body: list[str]) -> str:
    return (f'<svg class="chart" data-chart="{esc(name)}" viewBox="0 0 {WIDTH} {height:.0f}" '
            f'width="{WIDTH}" height="{height:.0f}" role="img" aria-label="{esc(title)}" '
            f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="{FONT}">'
            f"<title>{esc(title)}</title>" + "".join(body) + "</svg>")


def _text(x: float, y: float, s: str, anchor: str = "start", fill: str = INK, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{extra}>{esc(s)}</text>'


def hbar_chart(name: str, title: str, labels: Sequence[str], values: Sequence[float],
               fmt: Callable[[float], str] = fmt_count, notes: Sequence[str] | None = None) -> str:
    """Horizontal bars, one per label, with the value (and an optional note) at the
    bar's end; an empty chart says so."""
    label_w = min(8 + CHAR_W * max((len(s) for s in labels), default=4), WIDTH * 0.4)
    ends = [fmt(v) + (f" · {notes[i]}" if notes else "") for i, v in enumerate(values)]
    end_w = min(8 + CHAR_W * max((len(s) for s in ends), default=4), WIDTH * 0.4)
    plot_w = WIDTH - label_w - end_w
    top = max(values, default=0) or 1
    height = TOP + BAR_ROW * max(1, len(labels)) + 10
    body = [_text(0, 16, title, extra=' font-weight="600" font-size="14"')]
    if not labels:
        body.append(_text(label_w, TOP + 15, "none", fill=MUTED))
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = TOP + i * BAR_ROW
        w = max(1.0, plot_w * v / top) if v > 0 else 0
        body.append(_text(label_w - 8, y + 15, label, anchor="end", extra=' font-family="ui-monospace, monospace"'))
        body.append(f'<rect class="bar" x="{label_w:.1f}" y="{y + 3}" width="{w:.1f}" height="{BAR_ROW - 6}" '
                    f'fill="{BAR_COLOUR}"><title>{esc(label)}: {esc(fmt(v))}</title></rect>')
        body.append(_text(label_w + w + 6, y + 15, ends[i], fill=MUTED))
    return _svg(name, title, height, body)


def _y_axis(top_value: float, x0: float, y0: float, plot_w: float,
            fmt: Callable[[float], str]) -> tuple[float, list[str]]:
    """Grid lines and labels for 0..top_value; returns the axis maximum used."""
    step = nice_step(top_value, Y_TICKS)
    ymax = step * math.ceil(top_value / step - 1e-9) if top_value > 0 else 1.0
    out = []
    for i in range(round(ymax / step) + 1):
        v = i * step
        y = y0 - PLOT_HEIGHT * v / ymax
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + plot_w:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(x0 - 6, y + 4, fmt(v), anchor="end", fill=MUTED))
    return ymax, out


def log_histogram(name: str, title: str, counts: np.ndarray, bins_per_decade: int,
                  markers: Sequence[tuple[str, float]] = ()) -> str:
    """Counts of microsecond values in log bins (bin i starts at 10**(i/bins_per_decade)
    us), drawn over the whole decades that hold data, with `markers` (label,
    microseconds) as dashed lines (percentiles)."""
    nz = np.flatnonzero(counts)
    plot_w = WIDTH - LEFT - RIGHT
    y0 = TOP + PLOT_HEIGHT
    height = y0 + BOTTOM
    body = [_text(0, 16, title, extra=' font-weight="600" font-size="14"')]
    if not len(nz):
        body.append(_text(LEFT, TOP + 20, "none measured", fill=MUTED))
        return _svg(name, title, TOP + 40, body)
    d_lo = int(nz[0]) // bins_per_decade
    d_hi = int(nz[-1]) // bins_per_decade + 1
    lo, hi = d_lo * bins_per_decade, d_hi * bins_per_decade
    shown = counts[lo:hi]
    bw = plot_w / len(shown)
    ymax, axis = _y_axis(float(shown.max()), LEFT, y0, plot_w, fmt_count)
    body += axis
    for i, c in enumerate(shown):
        if c:
            h = max(1.0, PLOT_HEIGHT * c / ymax)
            a = 10 ** ((lo + i) / bins_per_decade)
            b = 10 ** ((lo + i + 1) / bins_per_decade)
            body.append(f'<rect class="bar" x="{LEFT + i * bw + 0.5:.1f}" y="{y0 - h:.1f}" width="{bw - 1:.1f}" '
                        f'height="{h:.1f}" fill="{BAR_COLOUR}"><title>{esc(fmt_duration(a))} to '
                        f'{esc(fmt_duration(b))}: {esc(fmt_count(c))}</title></rect>')
    for d in range(d_lo, d_hi + 1):
        x = LEFT + (d - d_lo) * bins_per_decade * bw
        body.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 5}" stroke="{MUTED}"/>')
        body.append(_text(x, y0 + 18, _round_duration(10.0 ** d), anchor=_tick_anchor(x, plot_w), fill=MUTED))
    body.append(f'<line x1="{LEFT}" y1="{y0}" x2="{LEFT + plot_w}" y2="{y0}" stroke="{MUTED}"/>')
    body += _markers(markers, lo, bw, bins_per_decade, plot_w, y0)
    body.append(_text(LEFT + plot_w, height - 4, "log scale", anchor="end", fill=MUTED))
    return _svg(name, title, height, body)


def _markers(markers: Sequence[tuple[str, float]], lo: int, bw: float, bins_per_decade: int, plot_w: float,
             y0: float) -> list[str]:
    """Dashed lines at `markers` (label, microseconds) on a log axis; markers at the
    same printed value share one line and one label ("p50 = p90 1.00 s")."""
    same: dict[str, list[str]] = {}
    where: dict[str, float] = {}
    for label, us in markers:
        if us > 0:
            key = fmt_duration(us)
            same.setdefault(key, []).append(label)
            where[key] = us
    out = []
    for i, (key, labels) in enumerate(same.items()):
        x = LEFT + (math.log10(where[key]) * bins_per_decade - lo) * bw
        right = x > LEFT + plot_w * 0.75          # near the right edge: the label goes left of its line
        out.append(f'<line class="marker" x1="{x:.1f}" y1="{TOP - 4}" x2="{x:.1f}" y2="{y0}" stroke="{ACCENT}" '
                   f'stroke-dasharray="4 3"/>')
        out.append(_text(x - 3 if right else x + 3, TOP + 8 + 13 * i, f"{' = '.join(labels)} {key}",
                         anchor="end" if right else "start", fill=ACCENT))
    return out


def time_series(name: str, title: str, start_us: int, width_us: int, counts: np.ndarray, origin_us: int,
                fmt: Callable[[float], str] = fmt_count) -> str:
    """Bars of `counts` per bin of `width_us` starting at `start_us`; the x axis in
    seconds since `origin_us` (the capture's first packet)."""
    plot_w = WIDTH - LEFT - RIGHT
    y0 = TOP + PLOT_HEIGHT
    height = y0 + BOTTOM
    body = [_text(0, 16, title, extra=' font-weight="600" font-size="14"'),
            _text(WIDTH - RIGHT, 16, f"per {_round_duration(width_us)}", anchor="end", fill=MUTED)]
    n = len(counts)
    if not n or not counts.any():
        body.append(_text(LEFT, TOP + 20, "none", fill=MUTED))
        return _svg(name, title, TOP + 40, body)
    bw = plot_w / n
    ymax, axis = _y_axis(float(counts.max()), LEFT, y0, plot_w, fmt)
    body += axis
    for i, c in enumerate(counts):
        if c > 0:
            h = max(1.0, PLOT_HEIGHT * c / ymax)
            t = (start_us + i * width_us - origin_us) / 1e6
            body.append(f'<rect class="bar" x="{LEFT + i * bw:.2f}" y="{y0 - h:.1f}" width="{max(bw - 0.6, 0.8):.2f}" '
                        f'height="{h:.1f}" fill="{BAR_COLOUR}"><title>+{t:.6g} s: {esc(fmt(c))}</title></rect>')
    body.append(f'<line x1="{LEFT}" y1="{y0}" x2="{LEFT + plot_w}" y2="{y0}" stroke="{MUTED}"/>')
    body += _time_ticks(start_us - origin_us, width_us * n, plot_w, y0)
    body.append(_text(LEFT + plot_w, height - 4, "seconds since the first packet", anchor="end", fill=MUTED))
    return _svg(name, title, height, body)


def _tick_anchor(x: float, plot_w: float) -> str:
    """A tick label at the plot's right end is anchored at its end, so it stays inside."""
    return "end" if x > LEFT + plot_w - 20 else "middle"


def _time_ticks(rel_start_us: int, span_us: int, plot_w: float, y0: float) -> list[str]:
    step = nice_step(span_us / 1e6, X_TICKS)
    first = math.ceil(rel_start_us / 1e6 / step - 1e-9)
    out = []
    k = first
    while True:
        t = k * step
        x = LEFT + (t * 1e6 - rel_start_us) / span_us * plot_w
        if x > LEFT + plot_w + 0.5:
            break
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 5}" stroke="{MUTED}"/>')
        out.append(_text(x, y0 + 18, f"{t:.10g}", anchor=_tick_anchor(x, plot_w), fill=MUTED))
        k += 1
    return out
