/* Capture files mapped from the page cache, and the SIGBUS guard that makes it safe.
 *
 * Reading a chunk of a capture with pread copies it from the page cache into our
 * buffer: for a file of large packets that copy is a large part of `analyze`'s time.
 * Mapping the chunk instead (mmap of the file, MAP_PRIVATE) reads the page cache in
 * place. The catch is the one every mmap reader has: a file cut shorter while mapped
 * (truncated by another process: `logrotate copytruncate`, a capture tool restarting)
 * makes any access to the pages past its new end raise SIGBUS (BUS_ADRERR), which kills
 * the process -- and a crash is the one thing a reader of untrusted, changing files
 * must never do.
 *
 * So every mapping is registered here, and a SIGBUS handler checks the faulting
 * address: inside a registered mapping, it maps anonymous zeros over the page and the
 * rest of the mapping (MAP_FIXED), counts them in the mapping's tally and returns --
 * the access is retried and reads zeros. The reader checks the tally (and the file's
 * size, for a cut inside a page, which reads zeros without a fault) and reports the
 * capture as changed while read (a CaptureError), so nothing is silently wrong either.
 * A SIGBUS anywhere else is not ours: it goes to the handler installed before ours
 * (faulthandler's report, a program's own), or takes the default action, as it would
 * without us. A handler installed after ours has the signal until the reader's next
 * read puts ours back in front (ftm_guard): the process cannot be told sooner.
 *
 * The table of mappings is read by the handler without a lock (it may interrupt a
 * thread holding any lock): each slot is a seqlock -- its generation is odd while a
 * registration changes it, and the handler uses a slot only if it read the same even
 * generation before and after its fields. Registrations take a mutex only against
 * each other. A mapping is withdrawn and unmapped only when nothing refers to it any
 * more (the FileMapping's last reference goes), so no thread can be faulting inside
 * it then: the zeros are never mapped into address space someone else has been given.
 */
#ifndef FASTTCP_MAPPED_IMPL_H
#define FASTTCP_MAPPED_IMPL_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#define FTM_SLOTS 512            /* mappings alive at once; more fall back to copying */

typedef struct {
    unsigned gen;                /* atomic: odd while the slot changes (a seqlock for the handler) */
    uintptr_t lo;                /* 0 = free */
    uintptr_t hi;
    uintptr_t zero_from;         /* atomic: where the zeros mapped over the file start (hi: none) */
    uint64_t *tally;             /* pages of this mapping found gone and read as zeros */
} ftm_slot_t;

static ftm_slot_t ftm_slots[FTM_SLOTS];
static struct sigaction ftm_prev;
static pthread_mutex_t ftm_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t ftm_page;
/* set when a fault not ours was handed to the handler before ours: entered again for a
 * SIGBUS not ours before ftm_guard installs ours again, the handlers are calling each
 * other (one that, like faulthandler, puts back the handler it replaced -- ours -- and
 * raises again): the default action then ends it, as it would have without us */
static volatile sig_atomic_t ftm_forwarded;

/* Zeros over [page, the slot's zeros) if the slot (read consistently: its generation the
 * same before and after) maps `a`: 1 if it does (handled), 0 if not, -1 if mmap failed. */
static int ftm_zero_in(ftm_slot_t *sl, uintptr_t a)
{
    unsigned g = __atomic_load_n(&sl->gen, __ATOMIC_ACQUIRE);
    if (g & 1)
        return 0;                /* changing: not the mapping the faulting thread reads */
    uintptr_t lo = __atomic_load_n(&sl->lo, __ATOMIC_RELAXED);
    uintptr_t hi = __atomic_load_n(&sl->hi, __ATOMIC_RELAXED);
    uint64_t *tally = __atomic_load_n(&sl->tally, __ATOMIC_RELAXED);
    uintptr_t end = __atomic_load_n(&sl->zero_from, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&sl->gen, __ATOMIC_ACQUIRE) != g || lo == 0 || a < lo || a >= hi)
        return 0;
    /* every page from this one to the mapping's end is past the file's new end: zeros
     * over all of them in one mapping, so that a mapping splits once (a page at a time,
     * faults far apart would each add two memory areas, up to the kernel's limit) */
    uintptr_t page = a & ~(ftm_page - 1);
    if (page >= end)
        return 1;                /* another thread's zeros got there first: read again */
    if (mmap((void *)page, end - page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
            == MAP_FAILED)
        return -1;
    /* count the pages this call zeroed that no other thread's zeros cover (the
     * mapping's end need not be a page's: a last partial page counts as one) */
    while (page < end) {
        if (__atomic_compare_exchange_n(&sl->zero_from, &end, page, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            __atomic_fetch_add(tally, (uint64_t)((end - page + ftm_page - 1) / ftm_page), __ATOMIC_RELAXED);
            break;
        }
    }
    return 1;
}

static void ftm_set_default(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
}

static void ftm_on_sigbus(int sig, siginfo_t *si, void *uc)
{
    if (si->si_code == BUS_ADRERR) {
        for (int i = 0; i < FTM_SLOTS; i++) {
            int rc = ftm_zero_in(&ftm_slots[i], (uintptr_t)si->si_addr);
            if (rc > 0)
                return;
            if (rc < 0)
                break;
        }
    }
    /* not a page of ours: to the handler before ours, as if ours were not there, and
     * ours stays in front for the pages that are */
    int saved = errno;
    int sent = si->si_code <= 0;
    if (ftm_forwarded || ftm_prev.sa_handler == SIG_DFL || (ftm_prev.sa_handler == SIG_IGN && !sent)) {
        /* the default action: a fault taken again on return, a sent signal raised again
         * (delivered once this handler returns), ends the process (the kernel does so
         * for an ignored fault too) */
        ftm_set_default();
        if (sent)
            raise(sig);
    } else if (ftm_prev.sa_handler != SIG_IGN) {
        if (!sent)
            ftm_forwarded = 1;
        if (ftm_prev.sa_flags & SA_SIGINFO)
            ftm_prev.sa_sigaction(sig, si, uc);
        else
            ftm_prev.sa_handler(sig);
    }
    errno = saved;
}

/* A tally's count, read while the handler may add to it on another thread. */
static inline uint64_t ftm_load_count(uint64_t *count)
{
    return __atomic_load_n(count, __ATOMIC_RELAXED);
}

/* Install the handler unless it is the current one (another library -- faulthandler,
 * enabled later -- may have put its own in front: ours goes back in front and calls it
 * for what is not ours). 0 or an errno. */
static int ftm_guard(void)
{
    struct sigaction cur, act;
    int rc = 0;
    pthread_mutex_lock(&ftm_lock);
    if (ftm_page == 0)
        ftm_page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (sigaction(SIGBUS, NULL, &cur) != 0) {
        rc = errno;
    } else if (!((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == ftm_on_sigbus)) {
        memset(&act, 0, sizeof act);
        act.sa_sigaction = ftm_on_sigbus;
        act.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&act.sa_mask);
        ftm_prev = cur;
        ftm_forwarded = 0;
        if (sigaction(SIGBUS, &act, NULL) != 0)
            rc = errno;
        /* read back: a sanitizer runtime may keep its own handler and ignore ours */
        else if (sigaction(SIGBUS, NULL, &cur) != 0 || !(cur.sa_flags & SA_SIGINFO)
                 || cur.sa_sigaction != ftm_on_sigbus)
            rc = ENOTSUP;
    }
    pthread_mutex_unlock(&ftm_lock);
    return rc;
}

/* Map `length` bytes of `fd` from `offset` (a multiple of the page size), read-write
 * and private (a write changes this process's copy, never the file), and register it.
 * 0 and *out set, or an errno: ENOSPC when every slot is taken. */
static int ftm_map(int fd, int64_t offset, size_t length, uint64_t *tally, void **out, int *slot)
{
    int rc = ftm_guard();
    if (rc != 0)
        return rc;
    void *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)offset);
    if (p == MAP_FAILED)
        return errno;
    pthread_mutex_lock(&ftm_lock);
    int i;
    for (i = 0; i < FTM_SLOTS; i++)
        if (__atomic_load_n(&ftm_slots[i].lo, __ATOMIC_RELAXED) == 0)
            break;
    if (i == FTM_SLOTS) {
        pthread_mutex_unlock(&ftm_lock);
        munmap(p, length);
        return ENOSPC;
    }
    ftm_slot_t *sl = &ftm_slots[i];
    __atomic_fetch_add(&sl->gen, 1, __ATOMIC_ACQ_REL);          /* odd: changing */
    __atomic_store_n(&sl->hi, (uintptr_t)p + length, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->zero_from, (uintptr_t)p + length, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->tally, tally, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->lo, (uintptr_t)p, __ATOMIC_RELAXED);
    __atomic_fetch_add(&sl->gen, 1, __ATOMIC_ACQ_REL);          /* even: the new mapping */
    pthread_mutex_unlock(&ftm_lock);
    *out = p;
    *slot = i;
    return 0;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22    /* Linux 5.14; older headers lack the name */
#endif

/* Fill the page tables of [p, p + length) from the page cache now, reading ahead any
 * pages not cached, as the faults of a first read would, but in one call: 0, or the
 * errno (EINVAL: a kernel before 5.14; EFAULT: part of the range is past the file's
 * end, which a populate reports instead of raising SIGBUS -- those pages are left to
 * fault, and the guard, when read). */
static int ftm_populate(void *p, size_t length)
{
    return madvise(p, length, MADV_POPULATE_READ) == 0 ? 0 : errno;
}

/* Withdraw a mapping from the table, then unmap it. */
static void ftm_unmap(void *p, size_t length, int slot)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&ftm_lock);
    __atomic_fetch_add(&ftm_slots[slot].gen, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&ftm_slots[slot].lo, (uintptr_t)0, __ATOMIC_RELAXED);
    __atomic_fetch_add(&ftm_slots[slot].gen, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&ftm_lock);
    munmap(p, length);
}

#endif
