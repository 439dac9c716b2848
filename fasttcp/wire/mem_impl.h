/* Memory helpers of the core: large zeroed allocations for the connection table, and
 * word-by-word copies for data that is read back a word at a time.
 *
 * Anonymous mmap gives zero pages that become resident only when touched (a table's
 * RSS grows with its connections, not its capacity), and MADV_HUGEPAGE asks for 2 MiB
 * pages: random lookups over a multi-GB table otherwise miss the TLB on nearly every
 * access, which costs more than the cache miss itself. Falls back to calloc elsewhere.
 */
#ifndef FASTTCP_MEM_IMPL_H
#define FASTTCP_MEM_IMPL_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/mman.h>

#define FT_HUGE_PAGE ((size_t)2 << 20)

/* The length mapped for `size` bytes: from 1 MiB on, whole 2 MiB pages. Linux places a
 * mapping whose length is a multiple of 2 MiB on a 2 MiB boundary; any other length
 * starts anywhere, and only the 2 MiB-aligned ranges inside it can be huge pages -- a
 * 2.3 MB table got none, and took 4 KiB page faults (each one zeroing a page and, once
 * the page was read before written, flushing the other CPUs' TLBs) on every record. */
static inline size_t ft_mapped_size(size_t size) {
    if (size == 0) return 1;
    if (size >= FT_HUGE_PAGE / 2) return (size + FT_HUGE_PAGE - 1) & ~(FT_HUGE_PAGE - 1);
    return size;
}

static inline void *ft_alloc_zeroed(size_t size) {
    void *p;
    size_t len = ft_mapped_size(size);
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_POPULATE
    /* under 1 MiB, all of it at once: a hash index is read before it is written, and
     * a page first read is the zero page, copied on the write with a TLB flush of
     * every CPU the process runs on */
    if (len < FT_HUGE_PAGE / 2) flags |= MAP_POPULATE;
#endif
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    if (len >= FT_HUGE_PAGE) madvise(p, len, MADV_HUGEPAGE);
#endif
    return p;
}

/* Zeroed memory written front to back and read back soon after (a buffer of rows):
 * the same mapping as ft_alloc_zeroed (free it with ft_free_zeroed), in 4 KiB pages,
 * none populated up front, so it costs what has been written -- a huge page would make
 * the first row written cost 2 MiB, resident and cleared, which a small owner should
 * not pay for the 1-2% huge pages gain (see Tracker.__init__). */
static inline void *ft_alloc_lazy(size_t size) {
    void *p = mmap(NULL, ft_mapped_size(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_NOHUGEPAGE
    /* (transparent huge pages may be on for every mapping, not only those advised) */
    madvise(p, ft_mapped_size(size), MADV_NOHUGEPAGE);
#endif
    return p;
}

static inline void ft_free_zeroed(void *p, size_t size) {
    if (p) munmap(p, ft_mapped_size(size));
}
#else
static inline void *ft_alloc_zeroed(size_t size) { return calloc(1, size == 0 ? 1 : size); }
static inline void *ft_alloc_lazy(size_t size) { return calloc(1, size == 0 ? 1 : size); }
static inline void ft_free_zeroed(void *p, size_t size) { (void)size; free(p); }
#endif

/* Copy n 8-byte words through a general register, one load and one store each.
 * Records and keys are read back as 8-byte words (hash, compare, events) soon after
 * they are written; a load that spans two stores still in flight cannot be forwarded
 * from the store buffer and waits for them to reach the cache. gcc merges plain
 * adjacent 8-byte copies into 16-byte vector moves -- exactly that case -- so the
 * empty asm keeps each word in a register. */
static inline void ft_copy_words(void *dst, const void *src, size_t n) {
    unsigned long long w;
    size_t i;
    for (i = 0; i < n; i++) {
        memcpy(&w, (const char *)src + 8 * i, 8);
#if defined(__GNUC__)
        __asm__("" : "+r"(w));
#endif
        memcpy((char *)dst + 8 * i, &w, 8);
    }
}

#endif
