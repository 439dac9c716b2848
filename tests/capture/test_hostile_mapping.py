"""Capture chunks mapped from the page cache (fasttcp.capture.mapped) and the SIGBUS
guard that makes a file cut shorter while mapped a CaptureError, not a crash.

Every reading test of test_chunks.py runs with chunks mapped and copied against the
same oracle (a pipe); here: what only a mapping can do -- have its file cut under it --
and the limits (slots run out: copied instead; a fault not ours: not swallowed).
Cutting a file happens in a child process (tests/probe.py), so that a guard that failed
would fail one test instead of killing pytest.
"""
from __future__ import annotations

import gc
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fasttcp.capture import chunks
from fasttcp.capture.mapped import PAGE_BYTES, FaultTally, FileMapping
from fasttcp.capture.reader import read_pcap
from tests.capture.test_chunks import read_through_pipe
from tests.capture.test_reader import IP4, eth, pcap_bytes, rows, write_file
from tests.probe import ROOT, expect_ok

# A capture whose first 8 MiB chunk holds more than one batch of 65536 packets: after
# the first batch, the rest of the chunk is still to be scanned from the mapping.
WRITE_CAPTURE = """
import struct
from pathlib import Path
from tests.capture.test_reader import IP4, eth, pcap_bytes
tcp = bytes.fromhex("450000280001000040060000c6120001c6120002")
tcp += bytes.fromhex("04d2005000000001000000005002ffff00000000")
path = Path(tempfile.mkdtemp()) / "cut.pcap"
path.write_bytes(pcap_bytes([(i * 1000, eth(0x0800, tcp)) for i in range(70000)]))
size = path.stat().st_size
"""


# The probes' end: read on to the end, or to the error, and say which (with `kept`, and
# `got`, the packets read in all).
READ_ON = """
try:
    while (b := reader.read_batch()) is not None:
        got += len(b)
    outcome(("no error", kept, got))
except fasttcp.CaptureError as e:
    outcome((str(e), kept, got))
"""


def backing(arr: np.ndarray) -> object:
    """The object at the end of an array's chain of bases."""
    obj: object = arr
    while True:
        if isinstance(obj, np.ndarray) and obj.base is not None:
            obj = obj.base
        elif isinstance(obj, memoryview):
            obj = obj.obj
        else:
            return obj


def test_a_file_cut_shorter_under_the_scanner_is_a_capture_error_not_a_crash():
    """The reader maps the chunk, hands out a batch, then the file is cut to its header:
    the next read raises CaptureError saying so -- and again at every read after -- and
    the batch held reads zeros past the cut (SIGBUS caught, counted)."""
    value = expect_ok("import os, tempfile\n" + WRITE_CAPTURE + """
reader = fasttcp.read_pcap(path)
first = reader.read_batch()
assert len(first) == 65536
os.truncate(path, 24)
errors = []
for _ in range(2):
    try:
        reader.read_batch()
    except fasttcp.CaptureError as e:
        errors.append(str(e))
tail = int(first.buffer[-4096:].sum())
outcome((len(errors), errors[0], reader.cut_pages > 0, tail))
""")
    n, message, cut, tail = eval(value)
    assert n == 2 and "cut shorter while it was read" in message and cut
    assert tail == 0                          # the batch's bytes past the cut read as zeros


def test_a_batch_held_past_the_cut_reads_zeros_and_the_reader_says_so():
    """A batch the caller still holds reads zeros where the file is gone (no SIGBUS),
    and the reader reports it on the next read even though its own scan was done."""
    value = expect_ok("import os, tempfile\n" + WRITE_CAPTURE + """
reader = fasttcp.read_pcap(path, batch_packets=1000)
batches = [reader.read_batch() for _ in range(3)]
os.truncate(path, 4096)
kept, got = int(batches[2].buffer[8192:].astype(np.int64).sum()), 0
""" + READ_ON)
    message, zeros, _ = eval(value)
    assert "cut shorter" in message and zeros == 0


def test_analyze_of_a_file_cut_while_tracked_ends_with_an_error_naming_it():
    """`analyze`, one worker and two: the file cut after the first batch. The run ends
    with ``summary.error`` (the CLI's exit status 1), never a crash or a silently short
    report."""
    for workers in (1, 2):
        value = expect_ok("import os, tempfile\n" + WRITE_CAPTURE + f"""
cut = []
def progress(done, total):
    if not cut:
        cut.append(os.truncate(path, 24))
s = fasttcp.analyze(str(path), workers={workers}, progress=progress)
outcome((s.error, s.packets))
""")
        error, packets = eval(value)
        assert error is not None and "cut shorter while it was read" in error, (workers, error)
        assert packets < 70000


def test_a_mapped_batch_is_writable_and_writing_it_never_changes_the_file(tmp_path):
    recs = [(i * 1000, eth(0x0800, IP4)) for i in range(2000)]
    data = pcap_bytes(recs)
    path = write_file(tmp_path / "w.pcap", data)
    with read_pcap(path) as reader:
        batch = reader.read_batch()
    assert isinstance(backing(batch.buffer), FileMapping)
    batch.buffer[int(batch.offsets[0]):int(batch.offsets[0]) + 4] = 0xEE
    assert bytes(batch.buffer[int(batch.offsets[0]):][:4]) == b"\xee" * 4
    assert path.read_bytes() == data


def test_more_chunks_held_than_mapping_slots_are_copied_and_read_the_same(tmp_path, monkeypatch):
    """A caller keeping every batch (``buffers=0``) keeps every chunk's mapping alive:
    past the table's slots, chunks are copied instead, and the packets are the same.
    (One chunk a window here, so that the slots run out.)"""
    monkeypatch.setattr(chunks, "WINDOW_BYTES", 4096)
    recs = [(i * 1000, eth(0x0800, IP4 + bytes([i & 0xFF]) * 40)) for i in range(60000)]
    path = write_file(tmp_path / "many.pcap", pcap_bytes(recs))
    want, _ = read_through_pipe(path, batch_bytes=4096)
    with read_pcap(path, batch_bytes=4096) as reader:
        batches = list(reader)
    mapped = sum(isinstance(backing(b.buffer), FileMapping) for b in batches)
    assert 0 < mapped <= 512 < len(batches)
    assert rows(batches) == want


@pytest.mark.parametrize(("window_bytes", "per_window"), [(4096, 1), (3 * 4096, 3), (16 << 20, 8)])
def test_mapped_chunks_share_windows_that_go_with_their_batches(tmp_path, monkeypatch, window_bytes, per_window):
    """Consecutive chunks are views of one mapping, a window of `per_window` chunks (as
    many as WINDOW_BYTES holds, at most CHUNKS_PER_MAPPING): the batches of a window's
    chunks share its mapping, every window spans its chunks and no more than it may,
    the packets are the pipe's, and once the batches and the reader are gone no mapping
    of the file is left."""
    monkeypatch.setattr(chunks, "WINDOW_BYTES", window_bytes)
    assert chunks.CHUNKS_PER_MAPPING == 8
    # (fewer chunks than the mapping table's slots, so that all are mapped)
    recs = [(i * 1000, eth(0x0800, IP4 + bytes([i & 0xFF]) * 40)) for i in range(8000)]
    path = write_file(tmp_path / "win.pcap", pcap_bytes(recs))
    want, _ = read_through_pipe(path, batch_bytes=4096)
    with read_pcap(path, batch_bytes=4096) as reader:
        batches = list(reader)
    assert rows(batches) == want
    windows: dict[int, FileMapping] = {}
    order = []
    for b in batches:
        m = backing(b.buffer)
        assert isinstance(m, FileMapping)
        if id(m) not in windows:
            windows[id(m)] = m
            order.append(id(m))
        # the batch's bytes lie inside its window
        start = np.frombuffer(m, dtype=np.uint8).ctypes.data
        assert start <= b.buffer.ctypes.data and b.buffer.ctypes.data + len(b.buffer) <= start + len(m)
    # one batch a chunk here: the windows take the chunks in turn, per_window each
    assert 3 * per_window < len(batches) < 512
    assert len(windows) == -(-len(batches) // per_window)
    # (from a page boundary up to HEADROOM bytes before its first chunk)
    assert all(len(m) < per_window * 4096 + chunks.HEADROOM + PAGE_BYTES for m in windows.values())
    # in file order (a window starts HEADROOM before its first chunk: those of the
    # first 256 KiB all start at 0)
    offsets = [windows[k].offset for k in order]
    assert offsets == sorted(offsets) and offsets[-1] > 0
    del batches, windows, b, m
    gc.collect()
    with open("/proc/self/maps") as f:
        assert not any(str(path) in line for line in f)


def test_a_window_that_cannot_be_mapped_lets_the_one_before_go(tmp_path, monkeypatch):
    """When the next window cannot be mapped (slots all taken, no mmap), its chunks are
    copied, and the window before is no longer the reader's: it goes with its batches,
    while the reader reads on -- it does not keep a slot and its pages to the end."""
    monkeypatch.setattr(chunks, "WINDOW_BYTES", 3 * 4096)
    made: list[int] = []

    def first_window_only(fd, offset, length, tally):
        if made:
            raise OSError(28, "no slot")          # ENOSPC, as a full table says
        made.append(offset)
        return FileMapping(fd, offset, length, tally)

    monkeypatch.setattr(chunks, "FileMapping", first_window_only)
    recs = [(i * 1000, eth(0x0800, IP4 + bytes([i & 0xFF]) * 40)) for i in range(2000)]
    path = write_file(tmp_path / "nowin.pcap", pcap_bytes(recs))
    want, _ = read_through_pipe(path, batch_bytes=4096)
    got = []
    with read_pcap(path, batch_bytes=4096) as reader:
        kinds = []
        while (b := reader.read_batch()) is not None:
            kinds.append(isinstance(backing(b.buffer), FileMapping))
            got.extend(rows([b]))
        del b
        gc.collect()
        # the reader is still open: nothing of the file is mapped any more
        with open("/proc/self/maps") as f:
            assert not any(str(path) in line for line in f)
    assert made == [0] and kinds[:3] == [True] * 3 and not any(kinds[3:])
    assert got == want


def test_a_sigbus_not_on_a_mapping_of_ours_still_kills_as_without_the_guard(tmp_path):
    """The guard handles faults on its own mappings only: any other SIGBUS reaches the
    handler before it (faulthandler's report here) and the default action."""
    code = textwrap.dedent(f"""
        import mmap, os, numpy as np
        from fasttcp.capture.mapped import FaultTally, FileMapping
        p = {str(tmp_path / "f")!r}
        with open(p, "wb") as f:
            f.write(b"x" * 8192)
        fd = os.open(p, os.O_RDONLY)
        ours = FileMapping(fd, 0, 8192, FaultTally())      # installs the guard
        theirs = mmap.mmap(fd, 8192, prot=mmap.PROT_READ)
        os.truncate(p, 0)
        print(np.frombuffer(ours, np.uint8)[5000], flush=True)   # ours: zeros
        print(theirs[5000], flush=True)                            # not ours: SIGBUS
    """)
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    # (the handler before faulthandler's: the default action, or a sanitizer's report)
    assert proc.returncode == -signal.SIGBUS or "AddressSanitizer: BUS" in proc.stderr, \
        (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split() == ["0"]
    assert "Bus error" in proc.stderr


def test_file_mapping_refuses_bad_arguments_and_counts_pages_past_the_end():
    """Offsets and lengths out of range are UsageError, a bad descriptor the OSError of
    mmap; pages mapped past the file's end read as zeros and are counted."""
    value = expect_ok("""
import os, tempfile
from fasttcp.capture.mapped import FileMapping, FaultTally, PAGE_BYTES
path = os.path.join(tempfile.mkdtemp(), "f")
with open(path, "wb") as f:
    f.write(b"x" * 100)
fd = os.open(path, os.O_RDONLY)
out = []
for args in [(fd, -PAGE_BYTES, 100), (fd, 1, 100), (fd, 0, 0), (fd, 0, -1), (fd, 0, 2**41), (fd, 2**63, 100),
             (fd, 0, 1.5), (fd, True, 100), (fd, 0, np.int64(100)), (-1, 0, 100), (999999, 0, 100)]:
    try:
        FileMapping(*args, FaultTally())
        out.append("ok")
    except Exception as e:
        out.append(type(e).__name__)
m = FileMapping(fd, 0, 3 * PAGE_BYTES, FaultTally())
a = np.frombuffer(memoryview(m), np.uint8)
out.append((int(a[:100].sum()), int(a[100:].astype(np.int64).sum()), m.tally.pages))
try:
    m.__init__(fd, 0, 100, FaultTally())
    out.append("mapped again")
except fasttcp.UsageError:
    out.append("UsageError")
outcome(out)
""")
    assert eval(value) == ["UsageError", "UsageError", "UsageError", "UsageError", "UsageError", "UsageError",
                           "UsageError", "UsageError", "UsageError", "UsageError", "OSError",
                           (120 * 100, 0, 2), "UsageError"]


def present(addr: int) -> bool:
    """Whether this process's page tables map the page at virtual address `addr`
    (/proc/self/pagemap: a 64-bit entry per page, bit 63 "present")."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE_BYTES * 8)
        return bool(int.from_bytes(f.read(8), "little") >> 63)


def populate_works(tmp_path) -> bool:
    """Whether this kernel fills page tables on request (MADV_POPULATE_READ: Linux 5.14);
    without it the reader reads as before, and the tests of the filling have nothing to
    check."""
    path = write_file(tmp_path / "one-page", b"x" * PAGE_BYTES)
    with open(path, "rb") as f:
        return FileMapping(f.fileno(), 0, PAGE_BYTES, FaultTally()).populate(0, PAGE_BYTES)


def test_the_next_chunks_page_tables_are_filled_ahead_of_the_scan(tmp_path):
    """`fill_ahead` on a mapped capture fills the page tables of the window's next
    chunks, one a call, up to `limit` chunks past the one being scanned: the scan then
    finds them mapped instead of faulting on each page."""
    if not populate_works(tmp_path):
        pytest.skip("the kernel has no MADV_POPULATE_READ (Linux < 5.14)")
    # (4 MiB chunks: a fault maps a whole folio of the page cache, up to 2 MiB)
    size = 4 << 20
    recs = [(i * 1000, eth(0x0800, IP4 + bytes([i & 0xFF]) * 1000)) for i in range(20000)]
    path = write_file(tmp_path / "ahead.pcap", pcap_bytes(recs))
    with read_pcap(path, batch_bytes=size) as reader:
        first = reader.read_batch()
        m = backing(first.buffer)
        assert isinstance(m, FileMapping)
        base = np.frombuffer(m, dtype=np.uint8).ctypes.data - m.offset   # address of file offset 0

        def middle(j: int) -> int:       # an address 3/4 into chunk j (the file's bytes from 24)
            return base + 24 + j * size + size * 3 // 4

        # (the scan of chunk 0 maps chunk 0 and at most the folio its end lies in)
        assert present(middle(0)) and not present(middle(1)) and not present(middle(2))
        assert reader.fill_ahead(2)
        assert present(middle(1)) and not present(middle(2))
        assert reader.fill_ahead(2)
        assert present(middle(2)) and not present(middle(3))
        assert not reader.fill_ahead(2)                    # two chunks ahead: enough
        second = reader.read_batch()
        assert backing(second.buffer) is m
        assert reader.fill_ahead(2) and present(middle(3))
        rest = list(reader)
    want, _ = read_through_pipe(path, batch_bytes=size)
    assert rows([first, second, *rest]) == want


def test_populate_refuses_bad_bounds_and_leaves_pages_past_the_end_to_fault(tmp_path):
    """`FileMapping.populate`: bounds out of range are UsageError; pages past the file's
    end are not mapped (False, no SIGBUS) and still read as zeros, counted, when read."""
    if not populate_works(tmp_path):
        pytest.skip("the kernel has no MADV_POPULATE_READ (Linux < 5.14)")
    value = expect_ok("""
import os, tempfile
from fasttcp.capture.mapped import FileMapping, FaultTally, PAGE_BYTES
path = os.path.join(tempfile.mkdtemp(), "f")
with open(path, "wb") as f:
    f.write(b"x" * (PAGE_BYTES + 100))
fd = os.open(path, os.O_RDONLY)
m = FileMapping(fd, 0, 4 * PAGE_BYTES, FaultTally())
out = []
for args in [(-1, 10), (10, 5), (0, 4 * PAGE_BYTES + 1), (True, 5), (0, 1.5), (0, np.int64(5)), (None, 5)]:
    try:
        m.populate(*args)
        out.append("ok")
    except Exception as e:
        out.append(type(e).__name__)
out.append(m.populate(0, 0))
out.append(m.populate(5, 2 * PAGE_BYTES))         # the file's two pages (the second partly)
out.append(m.populate(0, 4 * PAGE_BYTES))         # and two past its end
a = np.frombuffer(memoryview(m), np.uint8)
out.append((int(a[:PAGE_BYTES + 100].sum()), int(a[PAGE_BYTES + 100:].astype(np.int64).sum()), m.tally.pages))
outcome(out)
""")
    assert eval(value) == ["UsageError"] * 7 + [True, True, False, (120 * (PAGE_BYTES + 100), 0, 2)]


def test_a_cut_inside_a_page_reads_zeros_without_a_fault_and_is_still_found():
    """Cut 490 bytes short (not at a page boundary): the kernel reads the rest of that
    page as zeros and raises nothing, so only the file's size tells -- the reader
    checks it, and delivers no zero-length records from the zeros."""
    value = expect_ok("import os, tempfile\n" + WRITE_CAPTURE + """
reader = fasttcp.read_pcap(path)
kept, got = None, len(reader.read_batch())
os.truncate(path, size - 490)
""" + READ_ON)
    message, _, got = eval(value)
    assert "cut shorter" in message and got == 65536


def test_the_guard_is_put_back_after_another_handler_takes_sigbus():
    """faulthandler enabled, or a Python handler installed, after the first mapping:
    the next read puts the guard back in front, so a batch held past a cut still reads
    zeros rather than crash or hang. (A handler installed between two reads has the
    signal until the next one: the reader cannot see it sooner.)"""
    for install in ("import faulthandler; faulthandler.enable()",
                    "import signal; signal.signal(signal.SIGBUS, lambda *a: None)"):
        value = expect_ok("import os, tempfile\n" + WRITE_CAPTURE + f"""
reader = fasttcp.read_pcap(path, batch_packets=1000)
held = [reader.read_batch() for _ in range(3)]
{install}
reader.read_batch()
os.truncate(path, 4096)
try:
    reader.read_batch()
except fasttcp.CaptureError:
    pass
outcome(int(held[2].buffer[8192:].astype(np.int64).sum()))
""")
        assert value == "0", install


def test_a_sigbus_not_ours_passed_between_two_handlers_ends_instead_of_looping(tmp_path):
    """faulthandler enabled between two mappings: it holds ours as its previous handler
    and ours holds it. A SIGBUS not ours must not bounce between them for ever: the
    process dies after faulthandler's report."""
    code = textwrap.dedent(f"""
        import faulthandler, mmap, os
        from fasttcp.capture.mapped import FaultTally, FileMapping
        p = {str(tmp_path / "f")!r}
        with open(p, "wb") as f:
            f.write(b"x" * 8192)
        fd = os.open(p, os.O_RDONLY)
        first = FileMapping(fd, 0, 4096, FaultTally())
        faulthandler.enable()
        second = FileMapping(fd, 0, 4096, FaultTally())
        theirs = mmap.mmap(fd, 8192, prot=mmap.PROT_READ)
        os.truncate(p, 0)
        print(theirs[5000], flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode != 0
    assert 1 <= proc.stderr.count("Bus error") <= 2, proc.stderr[-2000:]


def test_zeros_over_a_cut_map_once_per_mapping_not_once_per_page(tmp_path):
    """A held chunk read page by page past a cut: the guard maps zeros over the rest of
    the mapping at the first fault, so the process's memory areas grow by a few per
    mapping, not two per page (which would run into the kernel's limit of them)."""
    value = expect_ok(f"""
import os
from tests.capture.test_reader import eth, pcap_bytes
path = {str(tmp_path / "big.pcap")!r}
with open(path, "wb") as f:
    f.write(pcap_bytes([(i, eth(0x0800, bytes(65000))) for i in range(512)], snaplen=1 << 16))
reader = fasttcp.read_pcap(path, batch_bytes=1 << 24)
batches = list(reader)
os.truncate(path, 24)
def areas():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)
before = areas()
for b in batches:
    for o in b.offsets[::-1]:
        b.buffer[int(o)]
outcome((areas() - before, len(batches), reader.cut_pages > 0))
""")
    grown, nbatches, cut = eval(value)
    assert cut and grown <= 4 * nbatches, (grown, nbatches)


def test_analyze_of_many_files_keeps_no_reader_or_mapping_of_them():
    """A rotated trace of many files: each file's reader and its mappings go when the
    file is done (the run keeps only their fault tallies), so memory does not grow
    with the number of files."""
    value = expect_ok("import gc, os, tempfile\n" + WRITE_CAPTURE + """
paths = [str(path)] * 30
most = [0]
def progress(done, total):
    # (during the run: the readers of the files done must be gone already)
    most[0] = max(most[0], sum(isinstance(o, fasttcp.CaptureReader) for o in gc.get_objects()))
s = fasttcp.analyze(paths, workers=2, progress=progress)
gc.collect()
with open("/proc/self/maps") as f:
    maps = sum(str(path) in line for line in f)
outcome((s.error, s.packets, most[0], maps))
""")
    error, packets, readers, maps = eval(value)
    assert error is None and packets == 30 * 70000 and readers <= 2 and maps == 0


def test_a_fault_in_a_mappings_last_partial_page_is_counted_after_the_reader_closed():
    """The reader done and closed (its last look at the file found nothing), the file is
    cut, and the batch's last packet -- in the mapping's last page, which is only part
    of a page of the file -- is read: it reads zeros and the tally counts it, which is
    what the run's check after the trackers looks at."""
    value = expect_ok("""
import os, tempfile
from fasttcp.capture.reader import cut_message
from tests.capture.test_reader import IP4, eth, pcap_bytes
path = os.path.join(tempfile.mkdtemp(), "small.pcap")
with open(path, "wb") as f:
    f.write(pcap_bytes([(i, eth(0x0800, IP4 + bytes(1000))) for i in range(13)]))
reader = fasttcp.read_pcap(path)
batches = list(reader)
reader.close()
os.truncate(path, 24)
last = batches[-1]
value = int(last.buffer[int(last.offsets[-1])])
outcome((os.path.getsize(path), value, reader.fault_tally.pages, cut_message(reader.fault_tally) is not None))
""")
    size, byte, pages, reported = eval(value)
    assert size == 24 and byte == 0 and pages >= 1 and reported


def test_a_sent_sigbus_a_program_handles_leaves_the_guard_in_front():
    """A program's own SIGBUS handler gets a `kill -BUS` sent to the process, and the
    guard stays in front of it: a batch held past a cut, read before any other read of
    the reader, still reads zeros (no hang in the program's handler)."""
    value = expect_ok("import os, signal, tempfile\n" + WRITE_CAPTURE + """
got = []
signal.signal(signal.SIGBUS, lambda *a: got.append(1))
reader = fasttcp.read_pcap(path, batch_packets=1000)
held = [reader.read_batch() for _ in range(3)]
os.kill(os.getpid(), signal.SIGBUS)
os.truncate(path, 4096)
outcome((int(held[2].buffer[8192:].astype(np.int64).sum()), len(got) >= 1))
""")
    assert eval(value) == (0, True)


def test_a_file_cut_to_nothing_and_written_on_at_its_old_offset_is_found():
    """`copytruncate` under a writer that keeps its offset (tcpdump does not open with
    O_APPEND): the file is cut to nothing, then written past where it was, so it is no
    shorter and its start is a hole of zeros -- no fault, no smaller size. The reader
    sees its magic number gone and says the file was cut."""
    value = expect_ok("import os, tempfile\n" + WRITE_CAPTURE + """
reader = fasttcp.read_pcap(path)
kept, got = None, len(reader.read_batch())
os.truncate(path, 0)
with open(path, "r+b") as f:
    f.seek(size + 4096)
    f.write(b"\\x01" * 4096)
""" + READ_ON)
    message, _, got = eval(value)
    assert "cut shorter" in message and got == 65536
