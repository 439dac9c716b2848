"""What the capture report draws, aggregated as the rows stream past: fixed-size
histograms, time series whose bins widen as the capture's span grows, bounded top-k
tables and the few slowest handshakes. Memory is a few MiB whatever the
capture's size; no list of rows is kept. Every update is numpy over a whole batch of
rows (or of packet times), never a Python loop per row."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasttcp.errors import UsageError
from fasttcp.tracker.tracker import FLOW_DTYPE, MAX_TIME_S
from fasttcp.tracker.vocabulary import ConnState, EndReason

__all__ = ["TimeBins", "LogHistogram", "BoundedTop", "SlowestHandshakes", "ReportAggregate",
           "TIME_BINS", "RTT_UNSET"]

#: bins of every time series: enough for a chart a page wide, few enough to read
TIME_BINS = 240
#: `FLOW_DTYPE` RTT fields hold this where the handshake step was not seen
RTT_UNSET = 0xFFFFFFFF
#: log-scale RTT histogram: bins per decade of microseconds, and the decades covered
#: (1 us .. 10**10 us, beyond the 2**32 us a uint32 RTT can hold)
BINS_PER_DECADE = 10
RTT_DECADES = 10
#: distinct hosts the top-talker table keeps before it drops the lightest
HOST_CAPACITY = 8192
#: TCP ports (the server-port table is exact: one slot per port)
PORTS = 1 << 16
#: slowest handshakes kept (each drawn as a ladder)
SLOWEST = 5
#: the latest time a tracker reports, microseconds
MAX_TIME_US = MAX_TIME_S * 1_000_000
#: rows folded at a time: bounds the temporary arrays (~100 bytes a row)
ROW_CHUNK = 1 << 15


class TimeBins:
    """Several series over one time axis in `TIME_BINS` bins. The bin width climbs the
    ladder 1, 5, 10, 50, 100 ... microseconds, merging 5 or 2 bins into one, until the
    span seen fits: so a 10 ms capture and a 10 hour one both fill between a fifth and
    all of the bins, and every width is a round number of seconds to label."""

    def __init__(self, series: tuple[str, ...], nbins: int = TIME_BINS) -> None:
        self.series = series
        self.nbins = nbins
        self.width_us = 1
        self.k0 = 0                     # absolute index (time // width) of bin 0
        self.lo: int | None = None      # absolute indices of the first and last bins with data
        self.hi: int | None = None
        self.counts = np.zeros((len(series), nbins), np.float64)

    def _coarsen(self) -> None:
        """Next width on the ladder: merge each run of `f` bins (aligned to multiples of
        the new width, so bins stay on round times)."""
        f = 5 if str(self.width_us)[0] == "1" else 2
        k0 = self.k0 // f
        front = self.k0 - k0 * f
        total = front + self.nbins
        total += (-total) % f
        padded = np.zeros((len(self.series), total))
        padded[:, front:front + self.nbins] = self.counts
        merged = padded.reshape(len(self.series), -1, f).sum(axis=2)
        self.counts = np.zeros_like(self.counts)
        self.counts[:, :merged.shape[1]] = merged[:, :self.nbins]
        self.width_us *= f
        self.k0 = k0
        assert self.lo is not None and self.hi is not None
        self.lo //= f
        self.hi //= f

    def cover(self, t_lo: int, t_hi: int) -> None:
        """Make the bins span `t_lo`..`t_hi` (microseconds) and all data so far."""
        while True:
            lo, hi = t_lo // self.width_us, t_hi // self.width_us
            if self.lo is None or self.hi is None:
                self.lo, self.hi, self.k0 = lo, hi, lo
            else:
                lo, hi = min(lo, self.lo), max(hi, self.hi)
            if hi - lo < self.nbins:
                break
            self._coarsen()
        self.lo, self.hi = lo, hi
        k0 = lo if lo < self.k0 else (hi - self.nbins + 1 if hi >= self.k0 + self.nbins else self.k0)
        if k0 != self.k0:
            moved = np.zeros_like(self.counts)
            shift = self.k0 - k0
            src = slice(max(0, -shift), min(self.nbins, self.nbins - shift))
            moved[:, src.start + shift:src.stop + shift] = self.counts[:, src]
            self.counts, self.k0 = moved, k0

    def add(self, series: str, times_us: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Count events at `times_us` (int64 microseconds), each `weights` (default 1)."""
        if not len(times_us):
            return
        self.cover(int(times_us.min()), int(times_us.max()))
        idx = times_us // self.width_us - self.k0
        self.counts[self.series.index(series)] += np.bincount(idx, weights, minlength=self.nbins)

    def spread(self, series: str, start_us: np.ndarray, end_us: np.ndarray, weights: np.ndarray) -> None:
        """Count `weights` spread evenly over each interval `start_us`..`end_us`: a bin
        gets the share of the interval it overlaps (an estimate, for counts the rows
        total without times, such as retransmissions)."""
        if not len(start_us):
            return
        end_us = np.maximum(end_us, start_us)
        self.cover(int(start_us.min()), int(end_us.max()))
        w = self.width_us
        sb, eb = start_us // w, end_us // w
        row = self.counts[self.series.index(series)]
        one = sb == eb
        row += np.bincount(sb[one] - self.k0, weights[one], minlength=self.nbins)
        many = ~one
        s, e, sb, eb = start_us[many], end_us[many], sb[many], eb[many]
        rate = weights[many] / (e - s)
        row += np.bincount(sb - self.k0, rate * ((sb + 1) * w - s), minlength=self.nbins)
        row += np.bincount(eb - self.k0, rate * (e - eb * w), minlength=self.nbins)
        # whole bins strictly between: a difference array, summed once
        diff = np.bincount(sb + 1 - self.k0, rate * w, minlength=self.nbins + 1) \
            - np.bincount(eb - self.k0, rate * w, minlength=self.nbins + 1)
        row += np.cumsum(diff)[:self.nbins]

    def view(self) -> tuple[int, int, np.ndarray]:
        """(first bin's start in microseconds, width in microseconds, counts of the bins
        from the first to the last with data: shape (series, bins))."""
        if self.lo is None:
            return 0, self.width_us, self.counts[:, :0]
        a, b = self.lo - self.k0, self.hi - self.k0 + 1   # type: ignore[operator]
        return self.lo * self.width_us, self.width_us, self.counts[:, a:b]


class LogHistogram:
    """Counts of microsecond values in log-spaced bins (`BINS_PER_DECADE` a decade,
    from 1 us): fixed memory, fine enough for a distribution plot (exact percentiles
    come from `fasttcp.analysis.Summary`)."""

    def __init__(self) -> None:
        self.counts = np.zeros(BINS_PER_DECADE * RTT_DECADES, np.int64)

    def add(self, values_us: np.ndarray) -> None:
        """Count `values_us` (values below 1 us fall in the first bin)."""
        if len(values_us):
            idx = (np.log10(np.maximum(values_us, 1).astype(np.float64)) * BINS_PER_DECADE).astype(np.int64)
            self.counts += np.bincount(np.minimum(idx, len(self.counts) - 1), minlength=len(self.counts))

    @staticmethod
    def edge_us(i: int) -> float:
        """Lower edge of bin `i` in microseconds."""
        return 10 ** (i / BINS_PER_DECADE)


class BoundedTop:
    """Weights summed per key (fixed-size byte strings) in at most `capacity` keys.
    While there are fewer distinct keys the sums are exact; past that the lightest are
    dropped at each merge, and `undercount` bounds how much any kept sum may miss (the
    sum of the largest weight dropped at each merge). Column 0 ranks."""

    def __init__(self, key_bytes: int, columns: int, capacity: int = HOST_CAPACITY) -> None:
        self.dtype = np.dtype(f"V{key_bytes}")
        self.capacity = capacity
        self.keys = np.empty(0, self.dtype)
        self.weights: np.ndarray = np.empty((0, columns), np.float64)
        self.undercount = 0.0

    def add(self, keys: np.ndarray, weights: np.ndarray) -> None:
        """Add `weights` (rows x columns) to `keys` (`key_bytes`-byte void values)."""
        if not len(keys):
            return
        allk = np.concatenate([self.keys, keys])
        allw = np.concatenate([self.weights, weights])
        uniq, inv = _group(allk)
        sums = np.stack([np.bincount(inv, allw[:, c], minlength=len(uniq)) for c in range(allw.shape[1])], axis=1)
        if len(uniq) > self.capacity:
            order = np.argsort(-sums[:, 0], kind="stable")
            self.undercount += float(sums[order[self.capacity], 0])
            keep = np.sort(order[:self.capacity])
            uniq, sums = uniq[keep], sums[keep]
        self.keys, self.weights = uniq, sums

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` heaviest keys and their weights, heaviest first (ties: by key)."""
        b = self.keys.view(np.uint8).reshape(len(self.keys), -1)
        order = np.lexsort([b[:, j] for j in reversed(range(b.shape[1]))] + [-self.weights[:, 0]])[:k]
        return self.keys[order], self.weights[order]


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct `keys` (void values) and each key's index among them. Keys whose
    bytes past the eighth are all zero (IPv4 hosts: a family byte and 4 address bytes)
    are grouped as uint64, several times faster than sorting byte strings."""
    b = keys.view(np.uint8).reshape(len(keys), -1)
    if b.shape[1] > 8 and not b[:, 8:].any():
        head = np.ascontiguousarray(b[:, :8]).view(np.uint64).ravel()
        _, first, inv = np.unique(head, return_index=True, return_inverse=True)
        return keys[first], inv
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv


def has_reset(rows: np.ndarray) -> np.ndarray:
    """Rows whose history has an R or r (a reset seen from either side), as a bool
    array: a byte compare over the history field (no string operation per row)."""
    hist = np.ascontiguousarray(rows["history"]).view(np.uint8).reshape(len(rows), -1)
    return ((hist == ord("R")) | (hist == ord("r"))).any(axis=1)


class SlowestHandshakes:
    """The `k` rows with the longest complete handshake (SYN -> SYN-ACK -> ACK, both
    RTTs seen), slowest first; ties by start time and ports, so the choice does not
    depend on the order rows arrive in (one worker or N)."""

    def __init__(self, k: int = SLOWEST) -> None:
        self.k = k
        self.rows: np.ndarray | None = None

    @staticmethod
    def total_us(rows: np.ndarray) -> np.ndarray:
        """SYN -> SYN-ACK plus SYN-ACK -> ACK of each row, microseconds (int64)."""
        return rows["rtt_syn_synack"].astype(np.int64) + rows["rtt_synack_ack"].astype(np.int64)

    def _candidates(self, total: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Which of the rows with handshake times `total` and starts `start` may be
        among their k slowest, in linear time: those slower than the k-th slowest, and
        of those as slow as it the earliest few (a synthetic capture may have every
        handshake alike: no sort of them all). A bool mask."""
        kth = np.partition(total, len(total) - self.k)[len(total) - self.k]
        slower, tied = total > kth, total == kth
        room = self.k - int(np.count_nonzero(slower))
        if np.count_nonzero(tied) > room:
            tied_start = start[tied]
            tied[tied] = tied_start <= np.partition(tied_start, room - 1)[room - 1]
        return slower | tied

    def add(self, rows: np.ndarray) -> None:
        """Consider `rows` (FLOW_DTYPE)."""
        if self.k == 0:
            return
        idx = np.flatnonzero((rows["rtt_syn_synack"] != RTT_UNSET) & (rows["rtt_synack_ack"] != RTT_UNSET))
        if not len(idx):
            return
        if len(idx) > self.k:
            total = rows["rtt_syn_synack"][idx].astype(np.int64) + rows["rtt_synack_ack"][idx]
            idx = idx[self._candidates(total, rows["start_us"][idx])]
        pool = rows[idx] if self.rows is None else np.concatenate([self.rows, rows[idx]])
        order = np.lexsort((pool["resp_p"], pool["orig_p"], pool["start_us"], -self.total_us(pool)))
        self.rows = pool[order[:self.k]].copy()


@dataclass
class CaptureSpan:
    """First and last packet time seen (microseconds), and packets counted."""

    first_us: int | None = None
    last_us: int | None = None


class ReportAggregate:
    """Everything the report draws, fed batch by batch: `add_packet_times` with each
    capture batch's times, `add_rows` with each batch of finished connections."""

    SERIES = ("connections", "packets", "retransmissions", "resets")

    def __init__(self, slowest: int = SLOWEST) -> None:
        self.time = TimeBins(self.SERIES)
        self.span = CaptureSpan()
        self.conn_states = np.zeros(len(ConnState) + 1, np.int64)    # by code; the last: unknown codes
        self.end_reasons = np.zeros(len(EndReason) + 1, np.int64)
        self.rtt_syn_synack = LogHistogram()
        self.rtt_synack_ack = LogHistogram()
        self.hosts = BoundedTop(17, 2)              # key: family byte + 16 address bytes; bytes, connections
        self.port_conns = np.zeros(PORTS, np.int64)  # by responder (server) port
        self.port_bytes = np.zeros(PORTS, np.float64)
        self.slowest = SlowestHandshakes(slowest)

    def add_packet_times(self, ts_ns: np.ndarray) -> None:
        """Count captured packets at their capture times (int64 nanoseconds; 0 = the
        format recorded none, not counted in time)."""
        us = ts_ns[ts_ns > 0] // 1000
        if not len(us):
            return
        lo, hi = int(us.min()), int(us.max())
        self.span.first_us = lo if self.span.first_us is None else min(lo, self.span.first_us)
        self.span.last_us = hi if self.span.last_us is None else max(hi, self.span.last_us)
        self.time.add("packets", us)

    def add_rows(self, rows: np.ndarray) -> None:
        """Fold finished connections (FLOW_DTYPE rows) into every table, `ROW_CHUNK`
        rows at a time (the end of a capture flushes every open connection at once:
        the temporaries stay a few MiB)."""
        if not isinstance(rows, np.ndarray) or rows.dtype != FLOW_DTYPE:
            raise UsageError(f"add_rows takes FLOW_DTYPE rows, got {getattr(rows, 'dtype', type(rows).__name__)}")
        for i in range(0, len(rows), ROW_CHUNK):
            self._add_chunk(rows[i:i + ROW_CHUNK])

    def _add_chunk(self, rows: np.ndarray) -> None:
        # a code no enum member has (rows built by hand) is counted in the last slot
        self.conn_states += np.bincount(np.minimum(rows["conn_state"], len(ConnState)), minlength=len(ConnState) + 1)
        self.end_reasons += np.bincount(np.minimum(rows["end_reason"], len(EndReason)), minlength=len(EndReason) + 1)
        for field, hist in (("rtt_syn_synack", self.rtt_syn_synack), ("rtt_synack_ack", self.rtt_synack_ack)):
            v = rows[field]
            hist.add(v[v != RTT_UNSET])
        # times past any a tracker gives (rows made by hand) are clipped: int64 stays exact
        start = np.minimum(rows["start_us"], MAX_TIME_US).astype(np.int64)
        end = np.minimum(rows["end_us"], MAX_TIME_US).astype(np.int64)
        self.time.add("connections", start)
        retrans = (rows["orig_retrans"].astype(np.float64) + rows["resp_retrans"])
        has = retrans > 0
        self.time.spread("retransmissions", start[has], end[has], retrans[has])
        self.time.add("resets", end[has_reset(rows)])
        self._add_talkers(rows)
        self.slowest.add(rows)

    def _add_talkers(self, rows: np.ndarray) -> None:
        n = len(rows)
        total = rows["orig_ip_bytes"].astype(np.float64) + rows["resp_ip_bytes"]
        keys = np.empty((2 * n, 17), np.uint8)
        keys[:n, 0] = keys[n:, 0] = rows["family"]
        keys[:n, 1:] = rows["orig_h"]
        keys[n:, 1:] = rows["resp_h"]
        weights = np.empty((2 * n, 2))
        weights[:n, 0] = weights[n:, 0] = total
        weights[:, 1] = 1
        # a connection from a host to itself (loopback) counts once for it
        weights[n:][(rows["orig_h"] == rows["resp_h"]).all(axis=1)] = 0
        self.hosts.add(keys.view("V17").ravel(), weights)
        ports = rows["resp_p"]
        self.port_conns += np.bincount(ports, minlength=PORTS)
        self.port_bytes += np.bincount(ports, total, minlength=PORTS)

    def top_ports(self, k: int) -> list[tuple[int, int, float]]:
        """The `k` responder ports with the most connections: (port, connections, bytes)."""
        order = np.lexsort((np.arange(PORTS), -self.port_conns))[:k]
        return [(int(p), int(self.port_conns[p]), float(self.port_bytes[p])) for p in order if self.port_conns[p]]

    @property
    def nbytes(self) -> int:
        """Bytes held (bounded: a few MiB whatever the capture)."""
        return (self.time.counts.nbytes + self.port_conns.nbytes + self.port_bytes.nbytes
                + self.hosts.keys.nbytes + self.hosts.weights.nbytes
                + (self.slowest.rows.nbytes if self.slowest.rows is not None else 0))

