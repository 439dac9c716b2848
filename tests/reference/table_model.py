"""Pure-Python model of fasttcp's connection table (fasttcp/table/table.pyx), written
from the documented rules only -- no hashing, no wheel, no pool: a dict and counters.

Rules modelled (see ConnectionTable's docstring and table.pxd):

* A key is (src, src_port, dst, dst_port); IPv4 and IPv6 are distinct families even when
  the address bytes agree. In a symmetric table both directions of a flow are one entry,
  stored in canonical order: the (address, port) pairs sorted ascending, addresses
  compared as 16 zero-padded bytes.
* Times are integer microseconds. Entering a state at ``now`` arms the timer at
  ``now + timeout[state]``; a timeout of 0 means no timer (and cancels any armed one).
  ``set_deadline(when)`` arms it at ``max(1, when)``; None cancels it.
* ``expire(now)`` removes and returns every entry whose armed deadline is <= now
  (including deadlines set in the past: they are due at the next expire), reporting the
  deadline exactly as it was set. ``expire(now, out=...)`` returns at most len(out) of
  them; the rest stay in the table, still due (``expire_keys`` removes the ones the
  table chose).
* When full: with policy "evict", drop the entry that entered TIME-WAIT longest ago
  (re-entering TIME-WAIT makes it young again), else the one that entered the
  never-established class (SYN-SENT / SYN-RECEIVED; moving between those two does not
  rejuvenate it) longest ago, else refuse; with policy "refuse", always refuse.
* Counters: inserts (successful), hits/misses (one per key looked up by any lookup-based
  call: ``in``, get, [], remove, set_state, set_deadline, lookup_batch -- insert does not
  count), removals (every entry that leaves the table: remove, eviction, expiry),
  evictions, refusals, expirations.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

SYN_SENT, SYN_RECEIVED, TIME_WAIT = 2, 3, 10
NSTATES = 11

CLASS_NONE, CLASS_TIME_WAIT, CLASS_EMBRYONIC = 0, 1, 2


def class_of(state: int) -> int:
    if state == TIME_WAIT:
        return CLASS_TIME_WAIT
    if state in (SYN_SENT, SYN_RECEIVED):
        return CLASS_EMBRYONIC
    return CLASS_NONE


def packed(addr) -> bytes:
    if isinstance(addr, (bytes, bytearray)):
        return bytes(addr)
    if isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return addr.packed
    return ipaddress.ip_address(addr).packed


def norm_key(key) -> tuple:
    """(family, lport, laddr16, rport, raddr16) as stored by a non-symmetric table."""
    src, sport, dst, dport = key
    la, ra = packed(src), packed(dst)
    assert len(la) == len(ra)
    fam = 4 if len(la) == 4 else 6
    return (fam, la.ljust(16, b"\0"), sport, ra.ljust(16, b"\0"), dport)


def canonical(nk: tuple) -> tuple[tuple, bool]:
    """Canonical (symmetric) order of a normalised key, and whether it was swapped."""
    fam, la, lp, ra, rp = nk
    if (la, lp) <= (ra, rp):
        return nk, False
    return (fam, ra, rp, la, lp), True


def key_tuple(nk: tuple) -> tuple:
    """Normalised key back to (ip, port, ip, port) with ipaddress objects."""
    fam, la, lp, ra, rp = nk
    n = 4 if fam == 4 else 16
    mk = ipaddress.IPv4Address if fam == 4 else ipaddress.IPv6Address
    return (mk(la[:n]), lp, mk(ra[:n]), rp)


@dataclass
class Entry:
    state: int
    deadline: int = 0            # 0 = no timer
    swapped: bool = False        # symmetric: first inserted direction is the reverse of the stored key
    class_seq: int = 0           # when it entered its eviction class (op sequence number)
    incarnation: int = 0         # distinguishes re-inserts of the same key (stale views)
    fields: dict = field(default_factory=dict)


class TableModel:
    def __init__(self, capacity: int, timeouts_us: list[int], *, evict: bool = True,
                 symmetric: bool = False) -> None:
        assert len(timeouts_us) == NSTATES
        self.capacity = capacity
        self.timeouts = list(timeouts_us)
        self.evict = evict
        self.symmetric = symmetric
        self.entries: dict[tuple, Entry] = {}
        self._seq = 0
        self._incarnation = 0
        self.stats = dict(inserts=0, hits=0, misses=0, removals=0, evictions=0, refusals=0,
                          expirations=0)

    # ---- keys ----

    def key(self, key) -> tuple[tuple, bool]:
        nk = norm_key(key)
        if self.symmetric:
            return canonical(nk)
        return nk, False

    def __len__(self) -> int:
        return len(self.entries)

    def _tick(self) -> int:
        self._seq += 1
        return self._seq

    # ---- lookups ----

    def lookup(self, key) -> Entry | None:
        """A lookup-based call on `key` (counts a hit or a miss)."""
        k, _ = self.key(key)
        e = self.entries.get(k)
        if e is None:
            self.stats["misses"] += 1
        else:
            self.stats["hits"] += 1
        return e

    def lookup_many(self, keys) -> list[Entry | None]:
        return [self.lookup(k) for k in keys]

    # ---- mutations ----

    def victim(self) -> tuple | None:
        if not self.evict:
            return None
        for cls in (CLASS_TIME_WAIT, CLASS_EMBRYONIC):
            cands = [(e.class_seq, k) for k, e in self.entries.items() if class_of(e.state) == cls]
            if cands:
                return min(cands)[1]
        return None

    def insert(self, key, state: int, now: int):
        """Returns ("exists", None) | ("refused", None) | ("ok", evicted normalised key or None)."""
        k, swapped = self.key(key)
        if k in self.entries:
            return "exists", None
        evicted = None
        if len(self.entries) >= self.capacity:
            evicted = self.victim()
            if evicted is None:
                self.stats["refusals"] += 1
                return "refused", None
            del self.entries[evicted]
            self.stats["evictions"] += 1
            self.stats["removals"] += 1
        self._incarnation += 1
        e = Entry(state=-1, swapped=swapped, incarnation=self._incarnation)
        self.entries[k] = e
        self.stats["inserts"] += 1
        self._enter(e, state, now)
        return "ok", evicted

    def _enter(self, e: Entry, state: int, now: int) -> None:
        old_cls = class_of(e.state) if e.state >= 0 else None
        new_cls = class_of(state)
        if new_cls != old_cls or new_cls == CLASS_TIME_WAIT:
            e.class_seq = self._tick()
        e.state = state
        t = self.timeouts[state]
        e.deadline = now + t if t else 0

    def remove(self, key) -> bool:
        e = self.lookup(key)
        if e is None:
            return False
        del self.entries[self.key(key)[0]]
        self.stats["removals"] += 1
        return True

    def remove_present(self, nk: tuple) -> None:
        """Remove by normalised key without a lookup (remove_ids)."""
        del self.entries[nk]
        self.stats["removals"] += 1

    def set_state(self, key, state: int, now: int) -> bool:
        e = self.lookup(key)
        if e is None:
            return False
        self._enter(e, state, now)
        return True

    def set_deadline(self, key, when: int | None) -> bool:
        e = self.lookup(key)
        if e is None:
            return False
        e.deadline = 0 if when is None else max(1, when)
        return True

    def expire(self, now: int) -> list[tuple[tuple, Entry]]:
        due = [(k, e) for k, e in self.entries.items() if e.deadline and e.deadline <= now]
        for k, _ in due:
            del self.entries[k]
        self.stats["expirations"] += len(due)
        self.stats["removals"] += len(due)
        return due

    def expire_keys(self, nks, now: int) -> None:
        """Expire exactly these (due) entries: what a bounded ``expire(now, out=...)`` did."""
        for nk in nks:
            e = self.entries[nk]
            assert e.deadline and e.deadline <= now, (nk, e.deadline, now)
            del self.entries[nk]
        self.stats["expirations"] += len(nks)
        self.stats["removals"] += len(nks)

    # ---- queries (no counters) ----

    def next_deadline(self) -> int | None:
        ds = [e.deadline for e in self.entries.values() if e.deadline]
        return min(ds) if ds else None

    def class_order(self, cls: int) -> list[tuple]:
        """Keys of an eviction class, oldest first (the order eviction takes them)."""
        return [k for _, k in sorted((e.class_seq, k) for k, e in self.entries.items()
                                     if class_of(e.state) == cls)]
