# cython: language_level=3
"""Symmetric flow hash and per-packet shards: which of N workers owns a connection.

Theory of operation: a worker per shard, each with its own tracker, sees both directions
of its connections only if the two directions hash alike. The hash is the one NICs
compute for receive-side scaling (Toeplitz, rss.pxd), under the key that makes it
symmetric (0x6d5a repeated, Woo and Park 2012), and the shard is the NIC's default
indirection table (`ethtool -x`: entry i holds queue i % queues) indexed by the hash's
low bits -- so a shard equals the NIC queue a symmetric-RSS NIC would have put the packet
in, and `--workers N` offline, AF_PACKET fanout and a Dask shuffle all split alike.

A key's tables (36 KiB) are built once and cached; every loop here runs without the GIL
over arrays checked at entry.
"""
from cpython.buffer cimport PyBuffer_Release
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free

from fasttcp.wire.buffers cimport ft_get_bytes
from fasttcp.wire.checksum cimport ft_load_be32
from fasttcp.wire.defs cimport FT_OK, FT_ERR_COUNT
from fasttcp.wire.spans cimport ft_first_bad_span, ft_first_at_least, ft_span_outside

import ipaddress
import operator

import numpy as np

from fasttcp.errors import UsageError, span_outside_buffer
from fasttcp.wire.address import packed as _packed
from fasttcp.wire.arrays import as_int64 as _as_int64

__all__ = ["RSS_KEY_MICROSOFT", "RSS_KEY_SYMMETRIC", "RssShards", "toeplitz_hash", "flow_hash", "flow_hash_rows",
           "shard_of_batch", "shard_of_hash"]

RSS_KEY_MICROSOFT = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")
"""The 40-byte key of Microsoft's RSS verification suite, the default of many NIC drivers
(not symmetric)."""

RSS_KEY_SYMMETRIC = bytes.fromhex("6d5a") * 20
"""0x6d5a repeated (40 bytes): under it the Toeplitz hash of (src, dst, sport, dport)
equals that of (dst, src, dport, sport) -- the key NICs are given for symmetric RSS (Woo
and Park, "Scalable TCP Session Monitoring with Symmetric Receive-side Scaling", 2012)."""

KEY_MIN_BYTES = FT_RSS_KEY_LEN
"""The shortest key taken: the 36-byte IPv6 input plus the 4 bytes of its last window."""

SHARDS_MAX = FT_RSS_SHARDS_MAX
RETA_MAX = FT_RSS_RETA_MAX
RETA_DEFAULT = 128
"""The indirection table size of most 10-100 Gb/s NICs (ixgbe, i40e, mlx5 per channel)."""

_PORT_MAX = 0xffff
_KEY_CACHE_MAX = 16          # keys whose tables are kept (36 KiB each)
_RETA_CACHE_MAX = 16


# ---- C: the tables and the loops ----

cdef inline uint32_t _window(const uint8_t *key, size_t bit) noexcept nogil:
    """The 32 key bits starting at bit `bit` (bit 0 is the most significant bit of
    key[0]); the key has at least bit // 8 + 5 bytes."""
    cdef size_t byte = bit >> 3
    cdef uint64_t v = (<uint64_t>ft_load_be32(key + byte) << 8) | key[byte + 4]
    return <uint32_t>(v >> (8 - (bit & 7)))


cdef void ft_rss_key_init(ft_rss_key_t *k, const uint8_t *key) noexcept nogil:
    cdef int i, m, b
    cdef uint32_t w[8]
    cdef uint32_t h
    for i in range(FT_RSS_INPUT_MAX):
        for m in range(8):
            w[m] = _window(key, <size_t>(8 * i + m))          # input bit m of byte i, most significant first
        for b in range(256):
            h = 0
            for m in range(8):
                if b & (0x80 >> m):
                    h ^= w[m]
            k.table[i][b] = h
    k.periodic = True
    for i in range(FT_RSS_KEY_LEN - 2):
        if key[i] != key[i + 2]:
            k.periodic = False


cdef uint32_t ft_toeplitz(const uint8_t *key, size_t key_len, const uint8_t *data, size_t n) noexcept nogil:
    # Microsoft, "RSS hashing functions", ComputeHash: for each input bit from the left,
    # XOR the key's leftmost 32 bits into the result if the bit is set, then shift the
    # key left one bit. `v` holds those 32 bits; the byte after them feeds the shift.
    cdef uint32_t result = 0, v = ft_load_be32(key)
    cdef size_t j, m
    cdef uint8_t nxt
    for j in range(n):
        nxt = key[j + 4] if j + 4 < key_len else 0
        for m in range(8):
            if data[j] & (0x80 >> m):
                result ^= v
            v = (v << 1) | ((nxt >> (7 - m)) & 1)
    return result


cdef Py_ssize_t ft_rss_shard_batch(const ft_rss_key_t *k, const uint8_t *buffer, uint64_t size,
                                   const int64_t *offsets, const int64_t *lengths, const uint8_t *link,
                                   Py_ssize_t n, const uint16_t *reta, uint32_t mask,
                                   uint16_t *out) noexcept nogil:
    cdef Py_ssize_t i, bad = -1
    cdef int64_t off, length
    cdef uint32_t h
    for i in range(n):
        off = offsets[i]
        length = lengths[i]
        if ft_span_outside(off, length, size):
            # checked at entry: only another thread rewriting the arrays since gets here
            if bad < 0:
                bad = i
            out[i] = 0
            continue
        if link != NULL and link[i] != FT_OK:
            out[i] = 0            # not an IP packet (or its link layer was not understood)
        elif ft_rss_packet_hash(k, buffer + off, <size_t>length, &h) != FT_RSS_NONE:
            out[i] = ft_rss_shard(h, reta, mask)
        else:
            out[i] = 0
    return bad


cdef void _hash_pairs(const ft_rss_key_t *k, const uint8_t *src, const uint8_t *dst, const uint16_t *sport,
                      const uint16_t *dport, const uint8_t *family, Py_ssize_t n, size_t stride,
                      uint32_t *out) noexcept nogil:
    """out[i] = the 4-tuple hash of flow i: addresses at src/dst + i * stride (IPv4 in
    the first 4 bytes when family[i] == 4, or when `family` is NULL and stride is 4)."""
    cdef Py_ssize_t i
    cdef int version
    for i in range(n):
        if family != NULL:
            version = 4 if family[i] == 4 else 6
        else:
            version = 4 if stride == 4 else 6
        out[i] = ft_rss_hash(k, version, src + i * stride, dst + i * stride, sport[i], dport[i], True)


# ---- keys ----

cdef class _KeyTables:
    """The tables of one key (ft_rss_key_t), built once: see `_tables`."""
    cdef ft_rss_key_t *k

    def __cinit__(self, bytes key):
        self.k = <ft_rss_key_t *>malloc(sizeof(ft_rss_key_t))
        if self.k == NULL:
            raise MemoryError()
        ft_rss_key_init(self.k, <const uint8_t *><const char *>key)

    def __dealloc__(self):
        free(self.k)


cdef dict _TABLES = {}


cdef bytes _key_bytes(object key):
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise UsageError(f"key must be bytes of at least {FT_RSS_KEY_LEN}, not {type(key).__name__}")
    cdef bytes kb = bytes(key)
    if len(kb) < FT_RSS_KEY_LEN:
        raise UsageError(f"key must be at least {FT_RSS_KEY_LEN} bytes (the 36-byte IPv6 input + 4), "
                         f"got {len(kb)}")
    return kb


cdef _KeyTables _tables(object key):
    """The cached tables of `key` (only its first FT_RSS_KEY_LEN bytes take part);
    UsageError for a key that is not bytes of at least that length."""
    cdef bytes used = _key_bytes(key)[:FT_RSS_KEY_LEN]
    t = _TABLES.get(used)
    if t is None:
        if len(_TABLES) >= _KEY_CACHE_MAX:
            del _TABLES[next(iter(_TABLES))]        # the oldest
        t = _KeyTables(used)
        _TABLES[used] = t
    return <_KeyTables>t


# ---- argument checks ----

cdef Py_ssize_t _int_in(object value, str name, Py_ssize_t lo, Py_ssize_t hi) except -1:
    if isinstance(value, bool):
        raise UsageError(f"{name} must be an int in {lo}..{hi}, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise UsageError(f"{name} must be an int in {lo}..{hi}, got {value!r}") from None
    if not lo <= v <= hi:
        raise UsageError(f"{name} must be in {lo}..{hi}, got {v}")
    return v


cdef object _reta(object shards, object reta_size):
    """The default indirection table of `shards` queues and `reta_size` entries (read-only,
    cached): entry i holds i % shards, as `ethtool -x` shows a NIC's before anyone sets
    it (ethtool_rxfh_indir_default)."""
    cdef Py_ssize_t s = _int_in(shards, "shards", 1, FT_RSS_SHARDS_MAX)
    cdef Py_ssize_t r = _int_in(reta_size, "reta_size", 1, FT_RSS_RETA_MAX)
    if r & (r - 1):
        raise UsageError(f"reta_size must be a power of two (the hash's low bits index it), got {r}")
    if r < s:
        raise UsageError(f"reta_size {r} is smaller than shards {s}: shards {r}..{s - 1} would never "
                         f"get a packet (raise reta_size)")
    t = _RETAS.get((s, r))
    if t is None:
        if len(_RETAS) >= _RETA_CACHE_MAX:
            del _RETAS[next(iter(_RETAS))]
        t = (np.arange(r, dtype=np.uint32) % s).astype(np.uint16)
        t.flags.writeable = False
        _RETAS[(s, r)] = t
    return t


cdef dict _RETAS = {}


def _ports(values, str name, Py_ssize_t n):
    """`values` as a contiguous uint16 array of n ports; UsageError for anything else."""
    try:
        a = np.asarray(values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UsageError(f"{name} must be an array of ports (integers 0..65535): {exc}") from None
    # (an empty array of any numeric type too: ``np.asarray([])`` is float64)
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):
        raise UsageError(f"{name} must be an array of ports (integers 0..65535), got dtype {a.dtype}")
    if a.shape != (n,):
        raise UsageError(f"{name} must be 1-D with one port per flow ({n}), got shape {a.shape}")
    if n and a.dtype != np.uint16:
        bad = np.flatnonzero((a < 0) | (a > _PORT_MAX))
        if bad.size:
            raise UsageError(f"{name}[{bad[0]}] = {a[bad[0]]} is not a port (0..65535)")
    return np.ascontiguousarray(a, dtype=np.uint16)


def _addresses(values, str name):
    a = np.asarray(values)
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] not in (4, 16):
        raise UsageError(f"{name} must be a uint8 array of shape (n, 4) or (n, 16) (addresses in network "
                         f"order), got dtype {a.dtype} shape {a.shape}")
    return np.ascontiguousarray(a)


def _port(value, str name):
    return _int_in(value, name, 0, _PORT_MAX)


# ---- the Python face ----

def toeplitz_hash(data, key=RSS_KEY_MICROSOFT):
    """The Toeplitz hash (32 bits) of `data` under `key`, computed bit by bit from the
    definition (Microsoft, "RSS hashing functions"): e.g. ``toeplitz_hash(src + dst +
    sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))`` is a NIC's TCP/IPv4 hash.

    Raises UsageError for a key that is not bytes of at least 40, data longer than
    ``len(key) - 4`` bytes, or a non-contiguous buffer."""
    cdef bytes kb = _key_bytes(key)
    cdef Py_buffer view
    cdef uint32_t h
    ft_get_bytes(data, &view, "data")
    try:
        if <size_t>view.len + 4 > <size_t>len(kb):
            raise UsageError(f"data of {view.len} bytes needs a key of {view.len + 4}, got {len(kb)}")
        h = ft_toeplitz(<const uint8_t *><const char *>kb, len(kb), <const uint8_t *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return h


_SCALAR_ADDRESS = (str, bytes, bytearray, ipaddress.IPv4Address, ipaddress.IPv6Address)


def flow_hash(src, dst, sport, dport, *, key=RSS_KEY_SYMMETRIC):
    """The RSS hash of flows (src, dst, sport, dport): a uint32 array for arrays, an int
    for one flow.

    Arrays: `src` and `dst` uint8 of shape (n, 4) (IPv4) or (n, 16) (IPv6), addresses in
    network order; `sport`, `dport` integer arrays of n ports. One flow: addresses as
    text, packed bytes or ipaddress objects, ports as ints. The input is what a NIC
    hashes for TCP: source address, destination address, source port, destination port.
    Under the default key (`RSS_KEY_SYMMETRIC`) ``flow_hash(a, b, p, q) ==
    flow_hash(b, a, q, p)``; `shard_of_hash` turns a hash into a shard.

    Raises UsageError for addresses of other shapes, dtypes or mixed families, ports
    outside 0..65535 or not integers, lengths that differ, or a bad `key`."""
    cdef _KeyTables t = _tables(key)
    cdef bytes a, b
    cdef uint16_t sp, dp
    if isinstance(src, _SCALAR_ADDRESS):
        a = _packed(src)
        b = _packed(dst)
        if len(a) != len(b):
            raise UsageError(f"src and dst must be one family, got {src!r} and {dst!r}")
        sp = _port(sport, "sport")
        dp = _port(dport, "dport")
        return ft_rss_hash(t.k, 4 if len(a) == 4 else 6, <const uint8_t *><const char *>a,
                           <const uint8_t *><const char *>b, sp, dp, True)
    s = _addresses(src, "src")
    d = _addresses(dst, "dst")
    if s.shape != d.shape:
        raise UsageError(f"src and dst must have one shape (one family), got {s.shape} and {d.shape}")
    cdef Py_ssize_t n = s.shape[0]
    return _hash_arrays(t, s, d, _ports(sport, "sport", n), _ports(dport, "dport", n), None)


def flow_hash_rows(rows, *, key=RSS_KEY_SYMMETRIC):
    """`flow_hash` of `FLOW_DTYPE` rows (a uint32 array): (orig_h, resp_h, orig_p,
    resp_p) of each row, IPv4 or IPv6 by its ``family``. Under the symmetric key this
    equals the hash of every packet of that connection, in both directions.

    Raises UsageError for an array without those fields (or with other types), not
    1-D, or a family other than 4 or 6 (the first such row is named)."""
    from fasttcp.tracker.tracker import FLOW_DTYPE
    cdef _KeyTables t = _tables(key)
    names = ("family", "orig_h", "resp_h", "orig_p", "resp_p")
    if not isinstance(rows, np.ndarray) or rows.dtype.names is None or rows.ndim != 1 \
            or any(f not in rows.dtype.names or rows.dtype.fields[f][0] != FLOW_DTYPE.fields[f][0] for f in names):
        raise UsageError("rows must be a 1-D array with FLOW_DTYPE's family, orig_h, resp_h, orig_p and resp_p")
    fam = np.ascontiguousarray(rows["family"])
    bad = np.flatnonzero((fam != 4) & (fam != 6))
    if bad.size:
        raise UsageError(f"row {bad[0]}: family {fam[bad[0]]} is neither 4 nor 6")
    return _hash_arrays(t, np.ascontiguousarray(rows["orig_h"]), np.ascontiguousarray(rows["resp_h"]),
                        np.ascontiguousarray(rows["orig_p"]), np.ascontiguousarray(rows["resp_p"]), fam)


cdef object _hash_arrays(_KeyTables t, object src, object dst, object sport, object dport, object family):
    """The C loop over checked contiguous arrays (family: uint8 or None)."""
    cdef Py_ssize_t n = src.shape[0]
    out = np.empty(n, dtype=np.uint32)
    if n == 0:
        return out
    cdef const uint8_t[:, ::1] s = src
    cdef const uint8_t[:, ::1] d = dst
    cdef const uint16_t[::1] sp = sport
    cdef const uint16_t[::1] dp = dport
    cdef const uint8_t[::1] fm
    cdef const uint8_t *fp = NULL
    cdef uint32_t[::1] o = out
    cdef size_t stride = s.shape[1]
    if family is not None:
        fm = family
        fp = &fm[0]
    with nogil:
        _hash_pairs(t.k, &s[0, 0], &d[0, 0], &sp[0], &dp[0], fp, n, stride, &o[0])
    return out


def shard_of_hash(hashes, shards, *, reta_size=RETA_DEFAULT):
    """The shard of each flow hash (`flow_hash`, `flow_hash_rows`): the default
    indirection table of `reta_size` entries, entry i holding shard i % shards, indexed
    by ``hash & (reta_size - 1)`` -- the rule `shard_of_batch` applies to packets. A
    uint16 array for an array, an int for an int.

    Raises UsageError for `shards` outside 1..65535, `reta_size` not a power of two in
    1..65536 or below `shards`, or hashes that are not integers in 0..2**32-1."""
    reta = _reta(shards, reta_size)
    mask = reta.shape[0] - 1
    if isinstance(hashes, (int, np.integer)) and not isinstance(hashes, (bool, np.bool_)):
        h = _int_in(hashes, "hash", 0, 0xffffffff)
        return int(reta[h & mask])
    try:
        a = np.asarray(hashes)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UsageError(f"hashes must be an array of integers: {exc}") from None
    if a.dtype.kind not in "iu":
        raise UsageError(f"hashes must be an array of integers, got dtype {a.dtype}")
    if a.dtype != np.uint32 and a.size and (a.min() < 0 or a.max() > 0xffffffff):
        raise UsageError("hashes must be 32-bit values (0..2**32-1)")
    return reta[a & mask]


cdef class RssShards:
    """A sharding of packets -- `shards` shards by the Toeplitz hash under `key`, through
    the default indirection table of `reta_size` entries -- for a reader that computes
    each packet's shard as it scans the record (`read_pcap(..., shards=...)`: the
    packet's headers are in the cache then; a pass of its own later reads them again).
    The shards are exactly those `shard_of_batch` gives with the same arguments.
    Equal when the arguments are. UsageError for arguments `shard_of_batch` refuses."""

    def __init__(self, shards, *, key=RSS_KEY_SYMMETRIC, reta_size=RETA_DEFAULT):
        # made once: a scan reads its tables without the GIL, so a second __init__ from
        # another thread must not swap (and free) them under it
        if self.k != NULL:
            raise UsageError("an RssShards is not changed once made: make a new one")
        # everything checked before anything is set: a reader must never see a half-made
        # sharding (the scanner refuses one whose tables are not set: RssShards.__new__)
        cdef _KeyTables t = _tables(key)
        reta = _reta(shards, reta_size)
        cdef const uint16_t[::1] rt = reta
        self._tables = t
        self.reta = reta
        self.shards = int(shards)
        self.key = _key_bytes(key)[:FT_RSS_KEY_LEN]
        self.mask = <uint32_t>(rt.shape[0] - 1)
        self.reta_p = &rt[0]          # (the cached table is read-only and kept by self.reta)
        self.k = t.k

    @property
    def reta_size(self) -> int:
        return int(self.reta.shape[0])

    def __eq__(self, other):
        if not isinstance(other, RssShards):
            return NotImplemented
        return (self.shards, self.reta_size, self.key) == (other.shards, other.reta_size, other.key)

    def __hash__(self):
        return hash((self.shards, self.reta_size, self.key))

    def __repr__(self):
        return f"RssShards({self.shards}, reta_size={self.reta_size})"


def shard_of_batch(batch, shards, *, key=RSS_KEY_SYMMETRIC, reta_size=RETA_DEFAULT, offsets=None, lengths=None):
    """The shard (0..shards-1) of every packet of a batch, as a uint16 array: what a NIC
    under symmetric RSS with its default indirection table would choose, so both
    directions of a TCP connection get one shard.

    ``shard_of_batch(capture_batch, n)`` with a `fasttcp.CaptureBatch`, or
    ``shard_of_batch(buffer, n, offsets=..., lengths=...)`` with IP packets at
    ``buffer[offsets[i]:offsets[i]+lengths[i]]``. A TCP packet the tracker keys by its
    4-tuple is hashed by (src, dst, sport, dport); any other IP packet (another
    protocol, a fragment, a bad TCP header) by its addresses; a packet whose addresses
    cannot be read, or whose link verdict is not OK, gets shard 0. The shard is then
    ``reta[hash & (reta_size - 1)]`` with ``reta[i] = i % shards`` (`shard_of_hash`).
    Checksums are not verified. Every packet gets one shard, the same on every run.

    Raises UsageError, before reading any packet, for `shards` outside 1..65535,
    `reta_size` not a power of two in 1..65536 or below `shards`, a bad `key`,
    offsets/lengths that are not 1-D integer arrays of one length, a span outside the
    buffer (the first is named), link verdicts that are not `fasttcp.Verdict` codes,
    or a batch that is neither form."""
    cdef _KeyTables t = _tables(key)
    reta = _reta(shards, reta_size)
    link = None
    if offsets is None and lengths is None:
        if not all(hasattr(batch, a) for a in ("buffer", "offsets", "lengths", "verdicts")):
            raise UsageError("shard_of_batch(capture_batch, shards) or "
                             "shard_of_batch(buffer, shards, offsets=..., lengths=...)")
        buf, offs, lens, link = batch.buffer, batch.offsets, batch.lengths, batch.verdicts
    elif offsets is None or lengths is None:
        raise UsageError("shard_of_batch(buffer, shards, offsets=..., lengths=...): both are needed")
    else:
        buf, offs, lens = batch, offsets, lengths
    off = _as_int64(offs, "offsets")
    ln = _as_int64(lens, "lengths")
    if off.ndim != 1 or off.shape != ln.shape:
        raise UsageError(f"offsets and lengths must be 1-D and the same length ({off.shape} vs {ln.shape})")
    cdef Py_ssize_t n = off.shape[0], i
    out = np.zeros(n, dtype=np.uint16)
    if n == 0:
        return out
    cdef const uint8_t[::1] lkv
    cdef const uint8_t *lkp = NULL
    if link is not None:
        lk = np.asarray(link)
        if lk.dtype.kind not in "iu" or lk.shape != off.shape:
            raise UsageError("link verdicts must be integers, one per packet")
        lk = np.ascontiguousarray(lk, dtype=np.uint8) if lk.dtype == np.uint8 else _verdict_codes(lk)
        lkv = lk
        lkp = &lkv[0]
        with nogil:
            i = ft_first_at_least(lkp, n, FT_ERR_COUNT)
        if i >= 0:
            raise UsageError(f"packet {i}: link verdict {int(lk[i])} is not a fasttcp.Verdict code")
    return _shard_loop(t, buf, off, ln, lkp, reta, out)


def _verdict_codes(lk):
    """Link verdicts of a wider integer type as uint8 (a value that does not fit is no code)."""
    bad = np.flatnonzero((lk < 0) | (lk >= FT_ERR_COUNT))
    if bad.size:
        raise UsageError(f"packet {bad[0]}: link verdict {int(lk[bad[0]])} is not a fasttcp.Verdict code")
    return np.ascontiguousarray(lk, dtype=np.uint8)


cdef object _shard_loop(_KeyTables t, object buf, object off, object ln, const uint8_t *link, object reta,
                        object out):
    """The checked spans, then the C loop (the GIL released)."""
    cdef Py_buffer view
    cdef const int64_t[::1] o = off
    cdef const int64_t[::1] l = ln
    cdef const uint16_t[::1] rt = reta
    cdef uint16_t[::1] sh = out
    cdef Py_ssize_t n = o.shape[0], i
    cdef uint32_t mask = <uint32_t>(rt.shape[0] - 1)
    ft_get_bytes(buf, &view, "buffer")
    try:
        with nogil:
            i = ft_first_bad_span(&o[0], &l[0], n, <uint64_t>view.len)
        if i >= 0:
            raise span_outside_buffer(i, off[i], ln[i], view.len)
        with nogil:
            i = ft_rss_shard_batch(t.k, <const uint8_t *>view.buf, <uint64_t>view.len, &o[0], &l[0], link, n,
                                   &rt[0], mask, &sh[0])
        if i >= 0:
            raise UsageError(f"packet {i}: offsets or lengths were rewritten (by another thread) "
                             f"while shard_of_batch ran, to a span outside the buffer")
    finally:
        PyBuffer_Release(&view)
    return out
