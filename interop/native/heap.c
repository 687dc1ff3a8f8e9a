/* Heaps on CdmUserMem regions (cdm_heap.h). Metadata (span descriptors, extent marks, free-extent lists,
 * thread caches) lives in plain anonymous mappings of its own, never in region memory, and no heap lock
 * is held while region memory is touched: a thread that faults on heap memory never holds a lock another
 * allocation, or the engine, needs. This file calls no malloc: the preloaded malloc is built from it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "heap_internal.h"

#define EXTENT_ALLOCATED 0x80000000u
#define BITS_WORDS_PER_SPAN (SPAN_BYTES / 8 / 64) /* one bit per 8-byte block at most */
#define HUGE_MAX 65536
#define LARGE_ALIGN (2ull << 20) /* the extent area starts on a 2 MiB boundary */
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))

const uint32_t heap_class_sizes[CDM_HEAP_CLASSES] = {
    8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768,
    896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384,
};
uint8_t heap_class_of_8[CDM_HEAP_SMALL_MAX / 8 + 1];
cdm_heap heap_slots[CDM_HEAP_MAX];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;
static pthread_key_t tcache_key;
/* Initial-exec: one instruction to reach, and small enough (256 bytes) for the static TLS room glibc keeps
 * for libraries loaded with dlopen, as .NET loads this one. */
__thread tls_slot heap_tls[CDM_HEAP_MAX] __attribute__((tls_model("initial-exec")));

static void *map_plain(uint64_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Gives pages back: the next touch reads zeros. In a region the pages become untouched, device frames go back
 * to their nodes, and the next touch is a first touch on the heap's placement node. */
static void discard(cdm_heap *h, void *p, uint64_t bytes) {
    if (h->engine) region_discard(h->engine, p, bytes);
    else madvise(p, bytes, MADV_DONTNEED);
}

static __attribute__((noreturn)) void heap_error(const char *what, const void *p) {
    char text[160];
    int n = snprintf(text, sizeof text, "cdm_heap_free(): %s (%p)\n", what, p);
    if (n > 0) (void)!write(2, text, (size_t)n);
    abort();
}

/* Readahead for a heap's regions: on the host it speeds up first touches of large blocks; on a device it would
 * spend the node's frames on memory past the blocks that nobody allocated. */
static uint32_t heap_readahead(const cdm_heap *h) { return h->placement == CDM_HOST_NODE ? 512 : 0; }

/* ---- thread caches ---- */

static void orphan_tcaches(void *arg) {
    (void)arg;
    for (int i = 0; i < CDM_HEAP_MAX; i++) {
        cdm_heap *h = &heap_slots[i];
        tls_slot *slot = &heap_tls[i];
        if (!slot->tc) continue;
        /* Under the heap lock, which destroy holds while it tears the heap down: the cache is still the
         * live heap's, or the heap is gone and the cache with it. */
        pthread_mutex_lock(&h->lock);
        if (atomic_load(&h->alive) && slot->generation == atomic_load(&h->generation)) {
            slot->tc->next_orphan = h->orphans;
            h->orphans = slot->tc;
        }
        pthread_mutex_unlock(&h->lock);
        slot->tc = NULL;
        slot->generation = 0;
    }
}

static void fork_prepare(void) {
    pthread_mutex_lock(&slots_lock);
    for (int i = 0; i < CDM_HEAP_MAX; i++) {
        pthread_mutex_lock(&heap_slots[i].lock);
        pthread_mutex_lock(&heap_slots[i].large_lock);
    }
}

static void fork_release(void) {
    for (int i = CDM_HEAP_MAX - 1; i >= 0; i--) {
        pthread_mutex_unlock(&heap_slots[i].large_lock);
        pthread_mutex_unlock(&heap_slots[i].lock);
    }
    pthread_mutex_unlock(&slots_lock);
}

static void heap_init_once(void) {
    for (uint32_t s = 0; s <= CDM_HEAP_SMALL_MAX; s += 8) {
        uint32_t c = 0;
        while (heap_class_sizes[c] < (s ? s : 1)) c++;
        heap_class_of_8[s / 8] = (uint8_t)c;
    }
    for (int i = 0; i < CDM_HEAP_MAX; i++) {
        pthread_mutex_init(&heap_slots[i].lock, NULL);
        pthread_mutex_init(&heap_slots[i].large_lock, NULL);
        pthread_cond_init(&heap_slots[i].unheld, NULL);
        heap_slots[i].id = i;
    }
    pthread_key_create(&tcache_key, orphan_tcaches);
    /* A child of fork() inherits every heap with its locks free; threads that did not fork leave their
     * caches behind, whose spans the child never reuses. */
    pthread_atfork(fork_prepare, fork_release, fork_release);
}


static NOINLINE tcache *tcache_make(cdm_heap *h) {
    tcache *tc = NULL;
    pthread_mutex_lock(&h->lock);
    if (h->orphans) {
        tc = h->orphans;
        h->orphans = tc->next_orphan;
    }
    pthread_mutex_unlock(&h->lock);
    if (!tc) {
        tc = map_plain(sizeof *tc);
        if (!tc) return NULL;
        tc->heap = h;
        pthread_mutex_lock(&h->lock);
        tc->next_all = h->all;
        h->all = tc;
        pthread_mutex_unlock(&h->lock);
    }
    heap_tls[h->id] = (tls_slot){tc, atomic_load(&h->generation)};
    pthread_setspecific(tcache_key, (void *)1);
    return tc;
}

/* The calling thread's cache of the heap, or NULL: frees never make one (a thread ending frees after its
 * cache was orphaned, and must not adopt it again). */
static inline tcache *tcache_peek(cdm_heap *h) {
    tls_slot *slot = &heap_tls[h->id];
    return slot->generation == atomic_load_explicit(&h->generation, memory_order_relaxed) ? slot->tc : NULL;
}

static inline tcache *tcache_of(cdm_heap *h) {
    tls_slot *slot = &heap_tls[h->id];
    if (likely(slot->generation == atomic_load_explicit(&h->generation, memory_order_relaxed))) return slot->tc;
    return tcache_make(h);
}

/* Live small bytes: every span's blocks out, less the remote frees waiting for their owner. The owners'
 * counters are read without their cooperation: a figure of the moment, exact once the heap is quiet. */
static uint64_t small_live(cdm_heap *h) {
    uint64_t live = 0, recent = 0;
    /* Blocks threads keep for reuse are free, though their spans count them. */
    for (tcache *tc = h->all; tc; tc = tc->next_all)
        for (unsigned c = 1; c < CDM_HEAP_CLASSES; c++) {
            /* The owner may be reusing the head meanwhile: the depth is then any value, so it is bounded. */
            block *head = __atomic_load_n(&tc->recent[c], __ATOMIC_ACQUIRE);
            uint64_t depth = head ? __atomic_load_n(&head->depth, __ATOMIC_RELAXED) : 0;
            recent += (depth < RECENT_MAX ? depth : RECENT_MAX) * heap_class_sizes[c];
        }
    for (uint64_t i = 0; i < h->span_bump; i++) {
        span *s = &h->spans[i];
        if (!atomic_load_explicit(&s->in_use, memory_order_relaxed)) continue;
        uint32_t used = __atomic_load_n(&s->used, __ATOMIC_RELAXED), pending = atomic_load_explicit(&s->remote_pending, memory_order_relaxed);
        live += (uint64_t)(used > pending ? used - pending : 0) * s->block_size;
    }
    return live > recent ? live - recent : 0;
}

/* The most bytes held in spans, extents and huge regions. Under h->lock. */
static void note_peak(cdm_heap *h) {
    uint64_t held = h->spans_in_use * SPAN_BYTES + h->large_live + atomic_load(&h->huge_live);
    uint64_t peak = atomic_load(&h->peak);
    while (held > peak && !atomic_compare_exchange_weak(&h->peak, &peak, held)) {}
}

/* ---- spans ---- */


static inline _Atomic uint64_t *bits_of(cdm_heap *h, span *s) {
    return h->bits + (uint64_t)(s - h->spans) * BITS_WORDS_PER_SPAN;
}

static span *span_take(tcache *tc, unsigned cls) {
    cdm_heap *h = tc->heap;
    pthread_mutex_lock(&h->lock);
    span *s = h->pool;
    if (s) {
        h->pool = s->next;
        if (s->dirty) h->pool_dirty -= SPAN_BYTES;
    } else if (h->span_bump < h->span_count) {
        s = &h->spans[h->span_bump];
        s->start = h->small_base + h->span_bump * SPAN_BYTES;
        h->span_bump++;
    }
    if (s) {
        h->spans_in_use++;
        s->dirty = true;
        note_peak(h);
    }
    pthread_mutex_unlock(&h->lock);
    if (!s) return NULL;
    s->free = NULL;
    atomic_store(&s->remote, 0);
    s->cls = (uint8_t)cls;
    s->block_size = heap_class_sizes[cls];
    s->capacity = (uint32_t)(SPAN_BYTES / s->block_size);
    s->bump = s->used = 0;
    atomic_store(&s->remote_pending, 0);
    s->in_partial = false;
    s->prev = s->next = NULL;
    atomic_store(&s->owner, tc);
    atomic_store(&s->in_use, true);
    return s;
}

static void partial_unlink(tcache *tc, span *s) {
    if (s->prev) s->prev->next = s->next;
    else tc->partial[s->cls] = s->next;
    if (s->next) s->next->prev = s->prev;
    else tc->partial_tail[s->cls] = s->prev;
    s->prev = s->next = NULL;
    s->in_partial = false;
}

static void partial_push(tcache *tc, span *s) {
    if (s->in_partial || tc->current[s->cls] == s) return;
    s->prev = NULL;
    s->next = tc->partial[s->cls];
    if (s->next) s->next->prev = s;
    else tc->partial_tail[s->cls] = s;
    tc->partial[s->cls] = s;
    s->in_partial = true;
}

/* A span all of whose blocks are free goes back to the pool; beyond the retention it is discarded. */
static void span_release(tcache *tc, span *s) {
    cdm_heap *h = tc->heap;
    if (s->in_partial) partial_unlink(tc, s);
    if (tc->current[s->cls] == s) tc->current[s->cls] = NULL;
    atomic_store(&s->in_use, false);
    pthread_mutex_lock(&h->lock);
    h->spans_in_use--;
    if (h->pool_dirty + SPAN_BYTES > h->retention) {
        /* No one can touch it meanwhile: it is in no cache and not yet in the pool. */
        discard(h, s->start, SPAN_BYTES);
        s->dirty = false;
    } else {
        h->pool_dirty += SPAN_BYTES;
    }
    s->next = h->pool;
    h->pool = s;
    pthread_mutex_unlock(&h->lock);
}

/* Moves the span's remote frees onto its free list; returns how many there were. */
static uint32_t span_collect(span *s) {
    uintptr_t got = atomic_exchange(&s->remote, 0);
    block *b = (block *)(got & ~FULL_TAG);
    uint32_t n = 0;
    while (b) {
        block *next = b->next;
        b->next = s->free;
        s->free = b;
        b = next;
        n++;
    }
    s->used -= n;
    atomic_fetch_sub_explicit(&s->remote_pending, n, memory_order_relaxed);
    return n;
}

static void drain_notified(tcache *tc) {
    span *s = atomic_exchange(&tc->notify, NULL);
    while (s) {
        span *next = s->notify_next;
        span_collect(s);
        if (s->used == 0 && tc->current[s->cls] != s) span_release(tc, s);
        else partial_push(tc, s);
        s = next;
    }
}

static NOINLINE void *alloc_slow(tcache *tc, unsigned cls) {
    span *s = tc->current[cls];
    if (s) {
        if (span_collect(s) == 0) {
            /* Exhausted: remote frees from now on list it on our notify stack, once. */
            uintptr_t expected = 0;
            if (!atomic_compare_exchange_strong(&s->remote, &expected, FULL_TAG)) span_collect(s);
        }
        if (!s->free) tc->current[cls] = NULL;
    }
    if (!tc->current[cls] && atomic_load_explicit(&tc->notify, memory_order_relaxed)) drain_notified(tc);
    if (!tc->current[cls] && tc->partial[cls]) {
        /* The oldest partial span: a span freed into a moment ago may hold one free block only. */
        s = tc->partial_tail[cls];
        partial_unlink(tc, s);
        tc->current[cls] = s;
    }
    if (!tc->current[cls]) {
        s = span_take(tc, cls);
        if (!s) {
            errno = ENOMEM;
            return NULL;
        }
        tc->current[cls] = s;
    }
    s = tc->current[cls];
    block *b;
    if (s->free) {
        b = s->free;
        s->free = b->next;
    } else {
        b = (block *)(s->start + (uint64_t)s->bump++ * s->block_size);
    }
    s->used++;
    return b;
}

static NOINLINE void mark_allocated(cdm_heap *h, span *s, void *p) {
    uint64_t i = (uint64_t)((uint8_t *)p - s->start) / s->block_size;
    atomic_fetch_or(&bits_of(h, s)[i / 64], 1ull << (i % 64));
}

/* Checked mode: 0 when p is an allocated block of s, which it marks free. */
static NOINLINE int mark_free(cdm_heap *h, span *s, void *p) {
    uint64_t offset = (uint64_t)((uint8_t *)p - s->start);
    if (offset % s->block_size || offset / s->block_size >= s->capacity) return CDM_E_HEAP_NOT_BLOCK;
    uint64_t i = offset / s->block_size, bit = 1ull << (i % 64);
    return atomic_fetch_and(&bits_of(h, s)[i / 64], ~bit) & bit ? 0 : CDM_E_HEAP_DOUBLE_FREE;
}

static NOINLINE void free_into_exhausted(tcache *tc, span *s) {
    /* It was exhausted: clear the tag, unless a remote free did and listed it with us already. */
    uintptr_t expected = FULL_TAG;
    if (atomic_compare_exchange_strong(&s->remote, &expected, 0) || expected == 0) partial_push(tc, s);
}

static ALWAYS_INLINE void *small_alloc(cdm_heap *h, unsigned cls) {
    tcache *tc = tcache_of(h);
    if (unlikely(!tc)) return NULL;
    span *s = tc->current[cls];
    void *p;
    if (likely(s && s->free)) {
        block *b = s->free;
        s->free = b->next;
        s->used++;
        p = b;
    } else if (likely(s && s->bump < s->capacity)) {
        p = s->start + (uint64_t)s->bump++ * s->block_size;
        s->used++;
    } else {
        p = alloc_slow(tc, cls);
        if (!p) return NULL;
        s = tc->current[cls];
    }
    tc->allocs[cls]++;
    if (unlikely(h->flags & CDM_HEAP_CHECKED)) mark_allocated(h, s, p);
    return p;
}

static NOINLINE void remote_free(span *s, block *b) {
    atomic_fetch_add_explicit(&s->remote_pending, 1, memory_order_relaxed);
    uintptr_t old = atomic_load_explicit(&s->remote, memory_order_relaxed);
    do {
        b->next = (block *)(old & ~FULL_TAG);
    } while (!atomic_compare_exchange_weak_explicit(&s->remote, &old, (uintptr_t)b, memory_order_release, memory_order_relaxed));
    if (old & FULL_TAG) {
        /* This free cleared the tag: it alone lists the span with its owner. */
        tcache *owner = atomic_load(&s->owner);
        span *head = atomic_load(&owner->notify);
        do {
            s->notify_next = head;
        } while (!atomic_compare_exchange_weak(&owner->notify, &head, s));
    }
}

/* A block freed by the thread that owns its span, onto the span's own free list. */
static ALWAYS_INLINE void owner_free(tcache *tc, span *s, block *b) {
    b->next = s->free;
    s->free = b;
    s->used--;
    if (unlikely(!s->in_partial && tc->current[s->cls] != s)) free_into_exhausted(tc, s);
    if (unlikely(s->used == 0 && tc->current[s->cls] != s && s->in_partial)) span_release(tc, s);
}

void recent_flush(cdm_heap *h, tcache *tc, unsigned cls) {
    for (block *b = tc->recent[cls], *next; b; b = next) {
        next = b->next;
        owner_free(tc, span_of(h, b), b);
    }
    __atomic_store_n(&tc->recent[cls], NULL, __ATOMIC_RELAXED);
}

static ALWAYS_INLINE int small_free(cdm_heap *h, void *p) {
    span *s = span_of(h, p);
    if (unlikely(!atomic_load_explicit(&s->in_use, memory_order_relaxed))) return CDM_E_HEAP_DOUBLE_FREE;
    if (unlikely(h->flags & CDM_HEAP_CHECKED)) {
        int rc = mark_free(h, s, p);
        if (rc) return rc;
    }
    tcache *tc = tcache_peek(h);
    block *b = p;
    if (likely(tc && atomic_load_explicit(&s->owner, memory_order_relaxed) == tc)) {
        owner_free(tc, s, b);
        return 0;
    }
    remote_free(s, b);
    return 0;
}

/* ---- extents ---- */

static int extents_reserve(cdm_heap *h, uint64_t more) {
    if (h->free_count + more <= h->free_capacity) return 0;
    uint64_t capacity = h->free_capacity ? h->free_capacity * 2 : 1024;
    while (capacity < h->free_count + more) capacity *= 2;
    free_extent *grown = map_plain(capacity * sizeof *grown);
    if (!grown) return -ENOMEM;
    if (h->frees) {
        memcpy(grown, h->frees, h->free_count * sizeof *grown);
        munmap(h->frees, h->free_capacity * sizeof *grown);
    }
    h->frees = grown;
    h->free_capacity = capacity;
    return 0;
}

static uint64_t dirty_bytes(const free_extent *f) {
    return f->populated ? f->pages * PAGE : 0;
}

/* Inserts [start, +pages) into the address-ordered free list, merging with neighbours; keeps
 * h->retained the bytes of populated free extents (a merge is fresh only if all of it is, populated if
 * any of it is). Under large_lock. */
static int extent_insert(cdm_heap *h, uint64_t start, uint64_t pages, bool fresh, bool populated) {
    uint64_t lo = 0, hi = h->free_count;
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (h->frees[mid].start < start) lo = mid + 1;
        else hi = mid;
    }
    bool left = lo > 0 && h->frees[lo - 1].start + h->frees[lo - 1].pages == start;
    bool right = lo < h->free_count && start + pages == h->frees[lo].start;
    free_extent merged = {start, pages, fresh, populated};
    if (left) {
        h->retained -= dirty_bytes(&h->frees[lo - 1]);
        merged.start = h->frees[lo - 1].start;
        merged.pages += h->frees[lo - 1].pages;
        merged.fresh = merged.fresh && h->frees[lo - 1].fresh;
        merged.populated = merged.populated || h->frees[lo - 1].populated;
    }
    if (right) {
        h->retained -= dirty_bytes(&h->frees[lo]);
        merged.pages += h->frees[lo].pages;
        merged.fresh = merged.fresh && h->frees[lo].fresh;
        merged.populated = merged.populated || h->frees[lo].populated;
    }
    if (left && right) {
        h->frees[lo - 1] = merged;
        memmove(&h->frees[lo], &h->frees[lo + 1], (h->free_count - lo - 1) * sizeof *h->frees);
        h->free_count--;
    } else if (left) {
        h->frees[lo - 1] = merged;
    } else if (right) {
        h->frees[lo] = merged;
    } else {
        if (extents_reserve(h, 1) < 0) return -ENOMEM;
        memmove(&h->frees[lo + 1], &h->frees[lo], (h->free_count - lo) * sizeof *h->frees);
        h->frees[lo] = merged;
        h->free_count++;
    }
    h->retained += dirty_bytes(&merged);
    return 0;
}

/* Takes [start, +pages) out of free extent i, giving back what is left on either side. */
static int extent_carve(cdm_heap *h, uint64_t i, uint64_t start, uint64_t pages) {
    free_extent f = h->frees[i];
    h->retained -= dirty_bytes(&f);
    memmove(&h->frees[i], &h->frees[i + 1], (h->free_count - i - 1) * sizeof *h->frees);
    h->free_count--;
    int rc = 0;
    if (start > f.start) rc |= extent_insert(h, f.start, start - f.start, f.fresh, f.populated);
    if (start + pages < f.start + f.pages) rc |= extent_insert(h, start + pages, f.start + f.pages - start - pages, f.fresh, f.populated);
    return rc;
}

/* Discards the largest dirty free extents until what stays populated fits the retention. Under large_lock:
 * an extent being discarded must not be handed out meanwhile. */
static void extents_trim(cdm_heap *h) {
    while (h->retained > h->retention) {
        uint64_t best = UINT64_MAX;
        for (uint64_t i = 0; i < h->free_count; i++)
            if (h->frees[i].populated && (best == UINT64_MAX || h->frees[i].pages > h->frees[best].pages)) best = i;
        if (best == UINT64_MAX) break;
        free_extent *f = &h->frees[best];
        /* Given back, but never taken for zeros: a migration holding one of its pages detached puts the
         * old bytes back, and a failed discard leaves them. */
        discard(h, h->large_base + f->start * PAGE, f->pages * PAGE);
        f->populated = false;
        h->retained -= f->pages * PAGE;
        h->discarded += f->pages * PAGE;
    }
}

static void *huge_alloc_region(cdm_heap *h, uint64_t bytes) {
    bytes = (bytes + (2u << 20) - 1) & ~(uint64_t)((2u << 20) - 1);
    cdm_region *r = NULL;
    uint8_t *base = NULL;
    if (h->engine && !engine_forked(h->engine)) {
        uint64_t b;
        if (cdm_region_create(h->engine, bytes, h->placement, 16, heap_readahead(h), &r, &b) < 0) return NULL;
        base = (uint8_t *)b;
    } else {
        /* A plain heap, or the child of a fork: the engine cannot map regions here. */
        base = map_plain(bytes);
        if (!base) return NULL;
    }
    pthread_mutex_lock(&h->large_lock);
    if (h->huge_count == HUGE_MAX) {
        pthread_mutex_unlock(&h->large_lock);
        if (r) cdm_region_destroy(r);
        else munmap(base, bytes);
        errno = ENOMEM;
        return NULL;
    }
    h->huge[h->huge_count++] = (huge_alloc){base, bytes, r};
    atomic_fetch_add(&h->huge_live, bytes);
    atomic_fetch_add(&h->huge_allocs, 1);
    pthread_mutex_unlock(&h->large_lock);
    pthread_mutex_lock(&h->lock);
    note_peak(h);
    pthread_mutex_unlock(&h->lock);
    return base;
}

/* The huge allocation starting at p, under large_lock; -1 if none. */
static int64_t huge_find(cdm_heap *h, const void *p, bool inside) {
    for (uint32_t i = 0; i < h->huge_count; i++) {
        const uint8_t *b = h->huge[i].base;
        if ((const uint8_t *)p == b || (inside && (const uint8_t *)p > b && (const uint8_t *)p < b + h->huge[i].bytes))
            return i;
    }
    return -1;
}

/* The first page index from `page` whose address is aligned to `alignment` (a power of two). */
static inline uint64_t aligned_page(const cdm_heap *h, uint64_t page, uint64_t alignment) {
    uintptr_t a = (uintptr_t)h->large_base + page * PAGE;
    a = (a + alignment - 1) & ~(uintptr_t)(alignment - 1);
    return (a - (uintptr_t)h->large_base) / PAGE;
}

static void *large_alloc(cdm_heap *h, size_t bytes, size_t alignment, bool zero) {
    /* Beyond the extent area (or near SIZE_MAX, where rounding up would wrap) only a huge region fits. */
    if (bytes > (1ull << 56)) {
        errno = ENOMEM;
        return NULL;
    }
    if (bytes >= h->huge_threshold && alignment <= PAGE) return huge_alloc_region(h, bytes); /* fresh: zeros */
    uint64_t pages = (bytes + PAGE - 1) / PAGE, align = alignment > PAGE ? alignment : PAGE;
    if (pages == 0) pages = 1;
    if (pages > h->large_pages || pages > 0x7FFFFFFFu) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&h->large_lock);
    uint64_t start = UINT64_MAX, best = UINT64_MAX;
    bool clean = true;
    for (uint64_t i = 0; i < h->free_count; i++) {
        free_extent *f = &h->frees[i];
        uint64_t s = aligned_page(h, f->start, align);
        if (s + pages > f->start + f->pages) continue;
        if (best == UINT64_MAX || f->pages < h->frees[best].pages) {
            best = i;
            start = s;
        }
    }
    int rc = 0;
    if (best != UINT64_MAX) {
        clean = h->frees[best].fresh;
        rc = extent_carve(h, best, start, pages);
    } else {
        start = aligned_page(h, h->large_bump, align);
        if (start + pages > h->large_pages) {
            pthread_mutex_unlock(&h->large_lock);
            errno = ENOMEM;
            return NULL;
        }
        if (start > h->large_bump) rc = extent_insert(h, h->large_bump, start - h->large_bump, true, false);
        h->large_bump = start + pages;
    }
    (void)rc; /* a gap the free list had no room for is only lost address space */
    h->extent[start] = (uint32_t)pages | EXTENT_ALLOCATED;
    h->large_live += pages * PAGE;
    atomic_fetch_add(&h->large_allocs, 1);
    pthread_mutex_unlock(&h->large_lock);
    pthread_mutex_lock(&h->lock);
    note_peak(h);
    pthread_mutex_unlock(&h->lock);
    uint8_t *p = h->large_base + start * PAGE;
    if (zero && !clean) memset(p, 0, bytes);
    return p;
}

static int large_free(cdm_heap *h, void *p) {
    uint64_t offset = (uint64_t)((uint8_t *)p - h->large_base);
    if (offset % PAGE) return CDM_E_HEAP_NOT_BLOCK;
    uint64_t page = offset / PAGE;
    pthread_mutex_lock(&h->large_lock);
    uint32_t mark = page < h->large_bump ? h->extent[page] : 0;
    if (!(mark & EXTENT_ALLOCATED)) {
        pthread_mutex_unlock(&h->large_lock);
        return mark ? CDM_E_HEAP_DOUBLE_FREE : CDM_E_HEAP_NOT_BLOCK;
    }
    uint64_t pages = mark & ~EXTENT_ALLOCATED;
    h->extent[page] = (uint32_t)pages; /* freed: a second free is told apart from a stray pointer */
    h->large_live -= pages * PAGE;
    extent_insert(h, page, pages, false, true);
    extents_trim(h);
    pthread_mutex_unlock(&h->large_lock);
    return 0;
}

static int huge_free(cdm_heap *h, void *p) {
    pthread_mutex_lock(&h->large_lock);
    /* A caller inside cdm_heap_hold may be using this region's pointer: its unmapping waits for it. */
    while (h->holders > 0) pthread_cond_wait(&h->unheld, &h->large_lock);
    int64_t i = huge_find(h, p, false);
    if (i < 0) {
        int rc = huge_find(h, p, true) >= 0 ? CDM_E_HEAP_NOT_BLOCK : CDM_E_HEAP_FOREIGN;
        pthread_mutex_unlock(&h->large_lock);
        return rc;
    }
    huge_alloc a = h->huge[i];
    h->huge[i] = h->huge[--h->huge_count];
    atomic_fetch_sub(&h->huge_live, a.bytes);
    pthread_mutex_unlock(&h->large_lock);
    if (a.region && !engine_forked(h->engine)) cdm_region_destroy(a.region);
    else munmap(a.base, a.bytes);
    return 0;
}

/* ---- the heap ---- */



/* Maps an area of `bytes` from a boundary of `align`: the mapping is `align` longer, and starts before. */
static int area_create(cdm_heap *h, uint64_t bytes, uint64_t align, cdm_region **region, uint8_t **map, uint8_t **base) {
    uint64_t mapped = bytes + align;
    if (h->engine) {
        uint64_t b;
        /* Fault-around 16 and readahead 512: sequential first touches of large blocks are read ahead. */
        int rc = cdm_region_create(h->engine, mapped, h->placement, 16, heap_readahead(h), region, &b);
        if (rc < 0) return rc;
        *map = (uint8_t *)b;
    } else {
        *region = NULL;
        *map = map_plain(mapped);
        if (!*map) return -ENOMEM;
    }
    *base = (uint8_t *)(((uintptr_t)*map + align - 1) & ~(uintptr_t)(align - 1));
    return 0;
}

static void heap_release(cdm_heap *h) {
    if (h->small_region) cdm_region_destroy(h->small_region);
    else if (h->small_map) munmap(h->small_map, h->small_size + SPAN_BYTES);
    if (h->large_region) cdm_region_destroy(h->large_region);
    else if (h->large_map) munmap(h->large_map, h->large_pages * PAGE + LARGE_ALIGN);
    for (uint32_t i = 0; h->huge && i < h->huge_count; i++) {
        if (h->huge[i].region) cdm_region_destroy(h->huge[i].region);
        else munmap(h->huge[i].base, h->huge[i].bytes);
    }
    if (h->spans) munmap(h->spans, h->span_count * sizeof(span));
    if (h->bits) munmap((void *)h->bits, h->span_count * BITS_WORDS_PER_SPAN * 8);
    if (h->extent) munmap(h->extent, h->large_pages * sizeof(uint32_t));
    if (h->frees) munmap(h->frees, h->free_capacity * sizeof(free_extent));
    if (h->huge) munmap(h->huge, HUGE_MAX * sizeof(huge_alloc));
    for (tcache *tc = h->all, *next; tc; tc = next) {
        next = tc->next_all;
        munmap(tc, sizeof *tc);
    }
    memset(&h->engine, 0, sizeof *h - offsetof(cdm_heap, engine));
    h->claimed = false;
}

int cdm_heap_create(cdm_engine *e, const cdm_heap_options *o, cdm_heap **out) {
    *out = NULL;
    pthread_once(&heap_once, heap_init_once);
    if (e && engine_forked(e)) return CDM_E_FORKED;
    cdm_heap_options d = {0};
    if (!o) o = &d;
    if (e && (o->placement < 0 || o->placement >= atomic_load(&e->node_count))) return -EINVAL;
    if (!e && o->placement != 0) return -EINVAL;
    uint64_t small = o->small_reserve ? o->small_reserve : 16ull << 30;
    uint64_t large = o->large_reserve ? o->large_reserve : 64ull << 30;
    if (small % SPAN_BYTES || large % PAGE || large / PAGE > 0x7FFFFFFFull) return -EINVAL;
    pthread_mutex_lock(&slots_lock);
    cdm_heap *h = NULL;
    for (int i = 0; i < CDM_HEAP_MAX && !h; i++)
        if (!heap_slots[i].claimed) h = &heap_slots[i];
    if (h) h->claimed = true;
    pthread_mutex_unlock(&slots_lock);
    if (!h) return CDM_E_HEAP_LIMIT;
    h->engine = e;
    h->placement = o->placement;
    h->flags = o->flags;
    h->retention = o->retention_bytes ? o->retention_bytes : 256ull << 20;
    h->huge_threshold = o->huge_threshold ? o->huge_threshold : CDM_HEAP_HUGE_DEFAULT;
    h->small_size = small;
    h->span_count = small / SPAN_BYTES;
    h->large_pages = large / PAGE;
    int rc = area_create(h, small, SPAN_BYTES, &h->small_region, &h->small_map, &h->small_base);
    if (rc == 0) rc = area_create(h, large, LARGE_ALIGN, &h->large_region, &h->large_map, &h->large_base);
    if (rc == 0) {
        h->spans = map_plain(h->span_count * sizeof(span));
        h->extent = map_plain(h->large_pages * sizeof(uint32_t));
        h->huge = map_plain(HUGE_MAX * sizeof(huge_alloc));
        if (h->flags & CDM_HEAP_CHECKED) h->bits = map_plain(h->span_count * BITS_WORDS_PER_SPAN * 8);
        if (!h->spans || !h->extent || !h->huge || ((h->flags & CDM_HEAP_CHECKED) && !h->bits)) rc = -ENOMEM;
    }
    if (rc < 0) {
        pthread_mutex_lock(&slots_lock);
        heap_release(h);
        pthread_mutex_unlock(&slots_lock);
        return rc;
    }
    atomic_fetch_add(&h->generation, 1);
    atomic_store(&h->alive, true);
    *out = h;
    return 0;
}

int cdm_heap_destroy(cdm_heap *h) {
    if (!h || !atomic_load(&h->alive)) return -EINVAL;
    if (h->engine && engine_forked(h->engine)) return CDM_E_FORKED;
    pthread_mutex_lock(&slots_lock);
    atomic_store(&h->alive, false);
    /* Under both heap locks: a thread ending (orphaning its cache) and cdm_heap_of (reading the huge
     * table) see the heap whole or gone. Every thread's cached pointer to its caches is stale from here. */
    pthread_mutex_lock(&h->lock);
    pthread_mutex_lock(&h->large_lock);
    while (h->holders > 0) pthread_cond_wait(&h->unheld, &h->large_lock);
    atomic_fetch_add(&h->generation, 1);
    heap_release(h);
    pthread_mutex_unlock(&h->large_lock);
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_unlock(&slots_lock);
    return 0;
}

static NOINLINE void *malloc_slow(cdm_heap *h, size_t bytes) {
    if (bytes <= CDM_HEAP_SMALL_MAX) return small_alloc(h, class_of(bytes));
    return large_alloc(h, bytes, PAGE, false);
}

/* The fast path is a leaf: a free block of the thread's current span, or a tail call to the rest. */
void *cdm_heap_malloc(cdm_heap *h, size_t bytes) {
    void *p = heap_malloc_fast(h, bytes);
    return likely(p != NULL) ? p : malloc_slow(h, bytes);
}

void *cdm_heap_calloc(cdm_heap *h, size_t count, size_t size) {
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    if (bytes <= CDM_HEAP_SMALL_MAX) {
        void *p = small_alloc(h, class_of(bytes));
        if (p) memset(p, 0, bytes);
        return p;
    }
    return large_alloc(h, bytes, PAGE, true);
}

void *cdm_heap_aligned_alloc(cdm_heap *h, size_t alignment, size_t bytes) {
    if (alignment == 0 || (alignment & (alignment - 1))) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment <= 8 || (alignment <= 16 && bytes > 8)) return cdm_heap_malloc(h, bytes);
    if (bytes <= CDM_HEAP_SMALL_MAX && alignment <= CDM_HEAP_SMALL_MAX) {
        /* Spans start on 64 KiB boundaries, so a block is aligned to any power of two dividing its class size. */
        for (unsigned c = class_of(bytes); c < CDM_HEAP_CLASSES; c++)
            if (heap_class_sizes[c] % alignment == 0) return small_alloc(h, c);
    }
    return large_alloc(h, bytes < PAGE ? PAGE : bytes, alignment, false);
}

int cdm_heap_posix_memalign(cdm_heap *h, void **out, size_t alignment, size_t bytes) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1))) return EINVAL;
    void *p = cdm_heap_aligned_alloc(h, alignment, bytes);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

static NOINLINE int free_slow(cdm_heap *h, void *p) {
    if (in_small(h, p)) {
        int rc = small_free(h, p);
        return rc ? rc : 1;
    }
    if (in_large(h, p)) {
        int rc = large_free(h, p);
        return rc ? rc : 1;
    }
    return 0;
}

/* The fast path is a leaf: a block of a span this thread owns; anything else is a tail call. */
int heap_free_owned(cdm_heap *h, void *p) {
    return likely(heap_free_fast(h, p)) ? 1 : free_slow(h, p);
}

int cdm_heap_free_checked(cdm_heap *h, void *p) {
    if (!p) return 0;
    int rc = heap_free_owned(h, p);
    if (likely(rc == 1)) return 0;
    return rc < 0 ? rc : huge_free(h, p);
}

void heap_free_failed(int rc, void *p) {
    heap_error(rc == CDM_E_HEAP_DOUBLE_FREE ? "double free" : rc == CDM_E_HEAP_NOT_BLOCK ? "pointer inside an allocation, not at its start"
               : rc == CDM_E_HEAP_FOREIGN ? "pointer this heap did not allocate" : "out of memory for the freeing thread's cache", p);
}

void cdm_heap_free(cdm_heap *h, void *p) {
    int rc = cdm_heap_free_checked(h, p);
    if (unlikely(rc < 0)) {
        heap_error(rc == CDM_E_HEAP_DOUBLE_FREE ? "double free" : rc == CDM_E_HEAP_NOT_BLOCK ? "pointer inside an allocation, not at its start"
                   : rc == CDM_E_HEAP_FOREIGN ? "pointer this heap did not allocate" : "out of memory for the freeing thread's cache", p);
    }
}

size_t cdm_heap_malloc_usable_size(cdm_heap *h, const void *p) {
    if (!p) return 0;
    if (in_small(h, p)) return span_of(h, p)->block_size;
    if (in_large(h, p)) {
        uint64_t page = (uint64_t)((const uint8_t *)p - h->large_base) / PAGE;
        return (size_t)(h->extent[page] & ~EXTENT_ALLOCATED) * PAGE;
    }
    pthread_mutex_lock(&h->large_lock);
    int64_t i = huge_find(h, p, false);
    size_t bytes = i < 0 ? 0 : h->huge[i].bytes;
    pthread_mutex_unlock(&h->large_lock);
    return bytes;
}

/* Grows an extent in place into the free pages right after it, or the unused tail of the area. */
static bool large_grow_in_place(cdm_heap *h, uint64_t page, uint64_t pages, uint64_t want) {
    bool grown = false;
    pthread_mutex_lock(&h->large_lock);
    if (h->extent[page] != ((uint32_t)pages | EXTENT_ALLOCATED) || want > 0x7FFFFFFFu) {
        pthread_mutex_unlock(&h->large_lock);
        return false;
    }
    uint64_t end = page + pages, more = want - pages;
    if (end == h->large_bump && end + more <= h->large_pages) {
        h->large_bump += more;
        grown = true;
    } else {
        for (uint64_t i = 0; i < h->free_count; i++)
            if (h->frees[i].start == end && h->frees[i].pages >= more) {
                grown = extent_carve(h, i, end, more) == 0;
                break;
            }
    }
    if (grown) {
        h->extent[page] = (uint32_t)want | EXTENT_ALLOCATED;
        h->large_live += more * PAGE;
    }
    pthread_mutex_unlock(&h->large_lock);
    return grown;
}

/* 0 when p is where an allocation of the heap starts (as far as the heap can tell: a small block's
 * second free is known in checked mode only), else the CDM_E_HEAP_* error. */
static int allocation_check(cdm_heap *h, const void *p) {
    if (in_small(h, p)) {
        span *s = span_of(h, p);
        if (!atomic_load(&s->in_use)) return CDM_E_HEAP_DOUBLE_FREE;
        uint64_t offset = (uint64_t)((const uint8_t *)p - s->start);
        if (offset % s->block_size || offset / s->block_size >= s->bump) return CDM_E_HEAP_NOT_BLOCK;
        if (h->flags & CDM_HEAP_CHECKED) {
            uint64_t i = offset / s->block_size;
            if (!(atomic_load(&bits_of(h, s)[i / 64]) & (1ull << (i % 64)))) return CDM_E_HEAP_DOUBLE_FREE;
        }
        return 0;
    }
    if (in_large(h, p)) {
        uint64_t offset = (uint64_t)((const uint8_t *)p - h->large_base), page = offset / PAGE;
        if (offset % PAGE) return CDM_E_HEAP_NOT_BLOCK;
        pthread_mutex_lock(&h->large_lock);
        uint32_t mark = page < h->large_bump ? h->extent[page] : 0;
        pthread_mutex_unlock(&h->large_lock);
        return mark & EXTENT_ALLOCATED ? 0 : mark ? CDM_E_HEAP_DOUBLE_FREE : CDM_E_HEAP_NOT_BLOCK;
    }
    pthread_mutex_lock(&h->large_lock);
    int rc = huge_find(h, p, false) >= 0 ? 0 : huge_find(h, p, true) >= 0 ? CDM_E_HEAP_NOT_BLOCK : CDM_E_HEAP_FOREIGN;
    pthread_mutex_unlock(&h->large_lock);
    return rc;
}

int cdm_heap_realloc_checked(cdm_heap *h, void *p, size_t bytes, void **out) {
    *out = NULL;
    if (!p) {
        *out = cdm_heap_malloc(h, bytes);
        return *out ? 0 : -ENOMEM;
    }
    int rc = allocation_check(h, p);
    if (rc < 0) return rc;
    if (bytes == 0) return cdm_heap_free_checked(h, p);
    size_t have = cdm_heap_malloc_usable_size(h, p);
    if (bytes <= have && bytes >= have / 2) {
        *out = p;
        return 0;
    }
    if (in_large(h, p) && bytes > have && bytes < h->huge_threshold && bytes <= (1ull << 56)) {
        uint64_t page = (uint64_t)((uint8_t *)p - h->large_base) / PAGE;
        if (large_grow_in_place(h, page, have / PAGE, (bytes + PAGE - 1) / PAGE)) {
            *out = p;
            return 0;
        }
    }
    void *q = cdm_heap_malloc(h, bytes);
    if (!q) return -ENOMEM;
    memcpy(q, p, have < bytes ? have : bytes);
    cdm_heap_free(h, p);
    *out = q;
    return 0;
}

void *cdm_heap_realloc(cdm_heap *h, void *p, size_t bytes) {
    void *q;
    int rc = cdm_heap_realloc_checked(h, p, bytes, &q);
    if (rc < 0 && rc != -ENOMEM) heap_free_failed(rc, p);
    if (rc == -ENOMEM) errno = ENOMEM;
    return q;
}

void cdm_heap_hold(cdm_heap *h) {
    pthread_mutex_lock(&h->large_lock);
    h->holders++;
    pthread_mutex_unlock(&h->large_lock);
}

void cdm_heap_unhold(cdm_heap *h) {
    pthread_mutex_lock(&h->large_lock);
    if (--h->holders == 0) pthread_cond_broadcast(&h->unheld);
    pthread_mutex_unlock(&h->large_lock);
}

cdm_heap *cdm_heap_of(const void *p) {
    for (int i = 0; i < CDM_HEAP_MAX; i++) {
        cdm_heap *h = &heap_slots[i];
        if (!atomic_load_explicit(&h->alive, memory_order_acquire)) continue;
        if (in_small(h, p) || in_large(h, p)) return h;
        pthread_mutex_lock(&h->large_lock);
        bool huge = atomic_load(&h->alive) && huge_find(h, p, true) >= 0;
        pthread_mutex_unlock(&h->large_lock);
        if (huge) return h;
    }
    return NULL;
}

int cdm_heap_locate(cdm_heap *h, const void *p, cdm_heap_range *out) {
    if (in_small(h, p)) {
        span *s = span_of(h, p);
        if (!atomic_load(&s->in_use)) return CDM_E_HEAP_DOUBLE_FREE;
        *out = (cdm_heap_range){h->small_region, s->start, (uint64_t)(s->start - h->small_map) / PAGE, SPAN_PAGES};
        return 0;
    }
    if (in_large(h, p)) {
        uint64_t page = (uint64_t)((const uint8_t *)p - h->large_base) / PAGE;
        pthread_mutex_lock(&h->large_lock);
        uint32_t mark = ((const uint8_t *)p - h->large_base) % PAGE == 0 && page < h->large_bump ? h->extent[page] : 0;
        pthread_mutex_unlock(&h->large_lock);
        if (!(mark & EXTENT_ALLOCATED)) return CDM_E_HEAP_NOT_BLOCK;
        *out = (cdm_heap_range){h->large_region, h->large_base + page * PAGE, page + (uint64_t)(h->large_base - h->large_map) / PAGE,
                                mark & ~EXTENT_ALLOCATED};
        return 0;
    }
    pthread_mutex_lock(&h->large_lock);
    int64_t i = huge_find(h, p, false);
    if (i >= 0) *out = (cdm_heap_range){h->huge[i].region, h->huge[i].base, 0, h->huge[i].bytes / PAGE};
    pthread_mutex_unlock(&h->large_lock);
    return i >= 0 ? 0 : CDM_E_HEAP_FOREIGN;
}

int cdm_heap_page_of(cdm_heap *h, const void *p, cdm_heap_range *out) {
    const uint8_t *page = (const uint8_t *)((uintptr_t)p & ~(uintptr_t)(PAGE - 1));
    if (in_small(h, p)) {
        *out = (cdm_heap_range){h->small_region, (uint8_t *)page, (uint64_t)(page - h->small_map) / PAGE, 1};
        return 0;
    }
    if (in_large(h, p)) {
        *out = (cdm_heap_range){h->large_region, (uint8_t *)page, (uint64_t)(page - h->large_map) / PAGE, 1};
        return 0;
    }
    pthread_mutex_lock(&h->large_lock);
    int64_t i = huge_find(h, p, true);
    if (i >= 0) *out = (cdm_heap_range){h->huge[i].region, (uint8_t *)page, (uint64_t)(page - h->huge[i].base) / PAGE, 1};
    pthread_mutex_unlock(&h->large_lock);
    return i >= 0 ? 0 : CDM_E_HEAP_FOREIGN;
}

int cdm_heap_ranges(cdm_heap *h, cdm_heap_range *ranges, int32_t max) {
    int n = 0;
    pthread_mutex_lock(&h->lock);
    uint64_t spans = h->span_bump;
    pthread_mutex_unlock(&h->lock);
    if (spans && n++ < max) ranges[n - 1] = (cdm_heap_range){h->small_region, h->small_base, (uint64_t)(h->small_base - h->small_map) / PAGE, spans * SPAN_PAGES};
    pthread_mutex_lock(&h->large_lock);
    if (h->large_bump && n++ < max) ranges[n - 1] = (cdm_heap_range){h->large_region, h->large_base, (uint64_t)(h->large_base - h->large_map) / PAGE, h->large_bump};
    for (uint32_t i = 0; i < h->huge_count; i++)
        if (n++ < max) ranges[n - 1] = (cdm_heap_range){h->huge[i].region, h->huge[i].base, 0, h->huge[i].bytes / PAGE};
    pthread_mutex_unlock(&h->large_lock);
    return n;
}

void cdm_heap_get_stats(cdm_heap *h, cdm_heap_stats *o) {
    memset(o, 0, sizeof *o);
    pthread_mutex_lock(&h->lock);
    uint64_t small = small_live(h);
    for (tcache *tc = h->all; tc; tc = tc->next_all)
        for (int c = 0; c < CDM_HEAP_CLASSES; c++) o->allocations_by_class[c] += __atomic_load_n(&tc->allocs[c], __ATOMIC_RELAXED);
    o->spans_in_use = h->spans_in_use;
    o->free_retained_bytes = h->pool_dirty;
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_lock(&h->large_lock);
    o->large_bytes = h->large_live;
    o->free_retained_bytes += h->retained;
    o->discarded_bytes = h->discarded;
    pthread_mutex_unlock(&h->large_lock);
    o->small_bytes = small;
    o->huge_bytes = atomic_load(&h->huge_live);
    o->live_bytes = o->small_bytes + o->large_bytes + o->huge_bytes;
    o->peak_bytes = atomic_load(&h->peak);
    if (o->peak_bytes < o->live_bytes) o->peak_bytes = o->live_bytes;
    o->large_allocations = atomic_load(&h->large_allocs);
    o->huge_allocations = atomic_load(&h->huge_allocs);
}

uint32_t cdm_heap_class_size(int32_t c) {
    return c >= 0 && c < CDM_HEAP_CLASSES ? heap_class_sizes[c] : 0;
}

/* ---- the default heap ---- */

static _Atomic(cdm_heap *) default_heap;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_make(void) {
    if (atomic_load(&default_heap)) return;
    cdm_engine *e;
    uint32_t mode;
    uint64_t missing;
    cdm_heap *h = NULL;
    if (cdm_engine_create(16384, 1, 0, &e, &mode, &missing) == 0 && cdm_heap_create(e, NULL, &h) == 0) {
        atomic_store(&default_heap, h);
        return;
    }
    /* No userfaultfd here: plain memory still serves the allocations. */
    if (cdm_heap_create(NULL, NULL, &h) == 0) atomic_store(&default_heap, h);
}

cdm_heap *cdm_default_heap(void) {
    cdm_heap *h = atomic_load(&default_heap);
    if (likely(h)) return h;
    pthread_once(&default_once, default_make);
    return atomic_load(&default_heap);
}

void cdm_set_default_heap(cdm_heap *h) { atomic_store(&default_heap, h); }

void *cdm_malloc(size_t bytes) {
    cdm_heap *h = cdm_default_heap();
    return h ? cdm_heap_malloc(h, bytes) : NULL;
}
void *cdm_calloc(size_t count, size_t size) {
    cdm_heap *h = cdm_default_heap();
    return h ? cdm_heap_calloc(h, count, size) : NULL;
}
void *cdm_realloc(void *p, size_t bytes) {
    cdm_heap *h = p ? cdm_heap_of(p) : cdm_default_heap();
    if (!h) heap_error("realloc of a pointer no heap allocated", p);
    return cdm_heap_realloc(h, p, bytes);
}
void cdm_free(void *p) {
    if (!p) return;
    cdm_heap *h = cdm_heap_of(p);
    if (!h) heap_error("pointer no heap allocated", p);
    cdm_heap_free(h, p);
}
void *cdm_aligned_alloc(size_t alignment, size_t bytes) {
    cdm_heap *h = cdm_default_heap();
    return h ? cdm_heap_aligned_alloc(h, alignment, bytes) : NULL;
}
int cdm_posix_memalign(void **out, size_t alignment, size_t bytes) {
    cdm_heap *h = cdm_default_heap();
    return h ? cdm_heap_posix_memalign(h, out, alignment, bytes) : ENOMEM;
}
size_t cdm_malloc_usable_size(const void *p) {
    cdm_heap *h = p ? cdm_heap_of(p) : NULL;
    return h ? cdm_heap_malloc_usable_size(h, p) : 0;
}
