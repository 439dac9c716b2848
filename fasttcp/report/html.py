"""The report page: one self-contained HTML file (inline CSS, inline SVG charts, ladder
pictures as data: URIs), with a Content-Security-Policy that forbids scripts and every
fetch, so it opens from disk and a hostile capture cannot make it run or load anything
even if a string escaped the escaping (`charts.esc` is used for every one)."""
from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence

import numpy as np

from fasttcp._version import __version__
from fasttcp.analysis.summary import Summary
from fasttcp.report.aggregate import BINS_PER_DECADE, ReportAggregate
from fasttcp.report.charts import (
    esc,
    fmt_bytes,
    fmt_count,
    fmt_duration,
    hbar_chart,
    log_histogram,
    time_series,
)
from fasttcp.report.ladders import LADDER_PACKETS
from fasttcp.tracker.vocabulary import ConnState, EndReason, _addr

__all__ = ["render_page", "CSP", "TOP_ROWS"]

#: scripts, fonts, frames and fetches all refused; only inline style and data: images
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: rows of the top-talker and top-port charts
TOP_ROWS = 10

# Zeek's conn_state meanings (its conn.log documentation), shortened to fit a label
CONN_STATE_MEANING = {
    "S0": "SYN, no reply", "S1": "established, not closed", "SF": "established, closed normally",
    "REJ": "SYN answered by RST", "S2": "originator closed, no reply", "S3": "responder closed, no reply",
    "RSTO": "originator aborted", "RSTR": "responder aborted", "RSTOS0": "SYN then RST, no SYN-ACK",
    "RSTRH": "SYN-ACK then RST, no SYN", "SH": "SYN then FIN, no SYN-ACK", "SHR": "SYN-ACK then FIN, no SYN",
    "OTH": "midstream, no SYN seen",
}
END_REASON_MEANING = {
    "LIVE": "still open", "TIMEOUT": "idle timeout", "REUSED": "4-tuple reused by a new SYN",
    "EVICTED": "evicted from a full table", "FLUSHED": "open at the end of the capture",
}

STYLE = """
body{margin:0;background:#f6f7f9;color:#222;font:14px/1.45 system-ui,sans-serif}
main{max-width:820px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #d5d9de;padding-bottom:4px}
.sub{color:#667;margin:0 0 16px;word-break:break-all}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:10px}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px 12px}
.card b{display:block;font-size:18px}.card span{color:#667;font-size:12px}
figure{background:#fff;border:1px solid #e1e4e8;border-radius:6px;margin:0 0 12px;padding:12px}
figure svg{display:block;width:100%;height:auto}figcaption{color:#667;font-size:12px;margin-top:6px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #e1e4e8;padding:4px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;white-space:nowrap}code{font-family:ui-monospace,monospace;font-size:12px}
table+.sub{margin-top:6px}.ladder img{display:block;max-width:100%;height:auto;margin:0 auto}
"""


def _utc(us: int | None) -> str:
    if us is None:
        return "?"
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _cards(summary: Summary, agg: ReportAggregate) -> str:
    span = agg.span
    duration = (span.last_us - span.first_us) if span.first_us is not None and span.last_us is not None else None
    items = [
        (fmt_count(summary.packets), "packets"),
        (fmt_bytes(summary.file_bytes), "capture file bytes read"),
        (fmt_duration(duration) if duration is not None else "?", "from first to last packet"),
        (fmt_count(summary.connections), "connections"),
        (fmt_count(summary.resets), "connections with a reset"),
        (fmt_count(summary.retransmissions), "retransmitted segments"),
    ]
    for label, samples in (("SYN → SYN-ACK", summary.rtt1), ("SYN-ACK → ACK", summary.rtt2)):
        p = samples.percentiles(1.0)
        items.append((fmt_duration(p["p50"]) if p else "none", f"median handshake RTT {label}"
                      + (f" (p99 {fmt_duration(p['p99'])}, n={fmt_count(p['n'])})" if p else "")))
    cards = "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in items)
    return f'<div class="cards">{cards}</div>'


def _notes(summary: Summary, agg: ReportAggregate) -> str:
    lines = [f"First packet {_utc(agg.span.first_us)}, last {_utc(agg.span.last_us)}."]
    bad = {k: v for k, v in summary.verdicts.items() if k != "OK"}
    if bad:
        lines.append("Packets not tracked: " + ", ".join(f"{k} {fmt_count(v)}" for k, v in sorted(bad.items())) + ".")
    lines += summary.caveats()
    return "".join(f'<p class="sub">{esc(s)}</p>' for s in lines)


def _figure(svg: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{svg}{cap}</figure>"


def _connections(agg: ReportAggregate) -> str:
    out = []
    for name, title, enum, counts, meaning, caption in (
            ("conn_state", "Connections by conn_state", ConnState, agg.conn_states, CONN_STATE_MEANING,
             "Zeek's conn_state: how each connection went."),
            ("end_reason", "Connections by end reason", EndReason, agg.end_reasons, END_REASON_MEANING,
             "Why the tracker finished each connection's record.")):
        # the last slot counts codes no member has (rows built by hand)
        kinds = sorted(((_name(enum, i) if i < len(enum) else "other", int(n)) for i, n in enumerate(counts) if n),
                       key=lambda kv: -kv[1])
        out.append(_figure(hbar_chart(name, title, [k for k, _ in kinds], [v for _, v in kinds],
                                      notes=[meaning.get(k, "unknown code") for k, _ in kinds]), caption))
    return "".join(out)


def _rtts(summary: Summary, agg: ReportAggregate) -> str:
    out = []
    for name, title, hist, samples in (
            ("rtt_syn_synack", "Handshake RTT: SYN → SYN-ACK", agg.rtt_syn_synack, summary.rtt1),
            ("rtt_synack_ack", "Handshake RTT: SYN-ACK → ACK", agg.rtt_synack_ack, summary.rtt2)):
        p = samples.percentiles(1.0)
        markers = [(k, p[k]) for k in ("p50", "p90", "p99")] if p else []
        out.append(_figure(log_histogram(name, title, hist.counts, BINS_PER_DECADE, markers),
                           "Connections per RTT bin (10 bins a decade); dashed lines: exact percentiles."))
    return "".join(out)


def _over_time(agg: ReportAggregate) -> str:
    start, width, counts = agg.time.view()
    origin = agg.span.first_us if agg.span.first_us is not None else start
    charts = (
        ("connections", "Connections started", "By the time of each connection's first packet."),
        ("packets", "Packets captured", "Every captured packet at its capture time."),
        ("retransmissions", "Retransmitted segments (estimated)",
         "Each connection's retransmissions spread evenly over its lifetime: the rows count them, "
         "not when they happened."),
        ("resets", "Connections with a reset", "At each reset connection's last packet."),
    )
    return "".join(_figure(time_series(f"time_{key}", title, start, width, counts[agg.SERIES.index(key)], origin),
                           caption) for key, title, caption in charts)


def _host_label(key: bytes) -> str:
    return _addr(key[0], np.frombuffer(key[1:], np.uint8))


def _conns(n: float) -> str:
    return f"{fmt_count(n)} connection" + ("" if n == 1 else "s")


def _top(agg: ReportAggregate) -> str:
    keys, weights = agg.hosts.top(TOP_ROWS)
    labels = [_host_label(bytes(k)) for k in keys]
    note = ""
    if agg.hosts.undercount:
        note = (f" More hosts than the table keeps: a host's bytes may be low by at most "
                f"{fmt_bytes(agg.hosts.undercount)}.")
    hosts = hbar_chart("top_hosts", "Top talkers by bytes", labels, list(weights[:, 0]) if len(weights) else [],
                       fmt=fmt_bytes, notes=[_conns(c) for c in weights[:, 1]])
    ports = agg.top_ports(TOP_ROWS)
    pchart = hbar_chart("top_ports", "Top server ports by connections", [str(p) for p, _, _ in ports],
                        [c for _, c, _ in ports], fmt=_conns, notes=[fmt_bytes(b) for _, _, b in ports])
    return (_figure(hosts, "IP bytes of the connections each host took part in, either side." + note)
            + _figure(pchart, "Responder port of each connection; bytes beside."))


def _slowest(agg: ReportAggregate, ladders: Sequence[str | None]) -> str:
    rows = agg.slowest.rows
    if rows is None or not len(rows):
        return '<p class="sub">No complete handshake (SYN, SYN-ACK and ACK all seen).</p>'
    origin = agg.span.first_us or 0
    head = "".join(f"<th{c}>{esc(h)}</th>" for h, c in (
        ("#", ' class="n"'), ("client → server", ""), ("started", ' class="n"'), ("SYN → SYN-ACK", ' class="n"'),
        ("SYN-ACK → ACK", ' class="n"'), ("conn_state", ""), ("history", "")))
    lines, figures = [], []
    for i, r in enumerate(rows):
        fam = int(r["family"])
        flow = f"{_addr(fam, r['orig_h'])}:{int(r['orig_p'])} → {_addr(fam, r['resp_h'])}:{int(r['resp_p'])}"
        cells = (str(i + 1), flow, f"+{(int(r['start_us']) - origin) / 1e6:.6f} s",
                 fmt_duration(int(r["rtt_syn_synack"])), fmt_duration(int(r["rtt_synack_ack"])),
                 _name(ConnState, int(r["conn_state"])), bytes(r["history"]).decode("ascii", "replace"))
        lines.append("<tr>" + "".join(f'<td{" class=n" if j in (0, 2, 3, 4) else ""}><code>{esc(c)}</code></td>'
                                      for j, c in enumerate(cells)) + "</tr>")
        svg = ladders[i] if i < len(ladders) else None
        if svg:
            uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")
            figures.append(f'<figure class="ladder"><img class="ladder-svg" data-chart="ladder_{i + 1}" '
                           f'alt="ladder diagram of connection {i + 1}" src="{uri}">'
                           f"<figcaption>{i + 1}. {esc(flow)}</figcaption></figure>")
    note = (f'<p class="sub">Each ladder: the connection\'s first {LADDER_PACKETS} packets, each side\'s '
            "state inferred from what it sent and received.</p>") if figures else \
        ('<p class="sub">No ladders: they need the captures as files (read a second time for these '
         "connections).</p>")
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>{note}" + "".join(figures)


def _name(enum: type, code: int) -> str:
    """The enum member's name, or the raw code when a row carries one it does not know."""
    try:
        return str(enum(code).name)
    except ValueError:
        return f"code {code}"


def render_page(summary: Summary, agg: ReportAggregate, ladders: Sequence[str | None] = ()) -> str:
    """The whole report as one HTML document (a str). `ladders[i]`: an SVG document
    drawing the i-th slowest handshake's connection, or None."""
    sections = [
        ("Summary", _cards(summary, agg) + _notes(summary, agg)),
        ("Connections", _connections(agg)),
        ("Handshake round-trip times", _rtts(summary, agg)),
        ("Over time", _over_time(agg)),
        ("Top talkers and ports", _top(agg)),
        ("Slowest handshakes", _slowest(agg, ladders)),
    ]
    body = "".join(f"<section><h2>{esc(t)}</h2>{html}</section>" for t, html in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>fasttcp report: {esc(summary.path)}</title><style>{STYLE}</style></head>"
            f"<body><main><h1>Capture report</h1>"
            f'<p class="sub">{esc(summary.path)} · fasttcp {esc(__version__)}</p>{body}</main></body></html>\n')
