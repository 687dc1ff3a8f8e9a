/* Heap internals shared by heap.c and the preloaded malloc, which inlines the fast paths below. */
#ifndef CDM_HEAP_INTERNAL_H
#define CDM_HEAP_INTERNAL_H
#include "cdm_heap.h"
#include "internal.h"

#define SPAN_SHIFT 16
#define SPAN_BYTES (1ull << SPAN_SHIFT)
#define SPAN_PAGES (SPAN_BYTES / PAGE)
#define FULL_TAG ((uintptr_t)1)
/* Blocks a thread freed last, per class, kept for its next allocations of that class: their lines are still
 * in its cache, where a span's free list hands out blocks freed long ago (measured: the miss on a popped
 * block's next pointer was 45 % of malloc's time in the Pareto mix). Their spans count them as used. */
#define RECENT_MAX 16
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

extern const uint32_t heap_class_sizes[CDM_HEAP_CLASSES];
/* Size class by (size + 7) / 8, built once. */
extern uint8_t heap_class_of_8[CDM_HEAP_SMALL_MAX / 8 + 1];

typedef struct block {
    struct block *next;
    uintptr_t depth; /* in a thread's recent list: blocks from here to its end (classes of 16 B and more) */
} block;

struct tcache;

typedef struct span {
    block *free;                   /* owner's free list */
    _Atomic uintptr_t remote;      /* blocks other threads freed, | FULL_TAG while the owner has none */
    uint8_t *start;
    uint32_t bump, capacity, used, block_size; /* used: blocks out, counting remote frees not yet collected */
    _Atomic uint32_t remote_pending;           /* remote frees not yet collected */
    uint8_t cls;
    bool in_partial;               /* on its owner's partial list (owner only) */
    _Atomic bool in_use;           /* taken from the pool */
    bool dirty;                    /* touched since it was last discarded (under the heap lock) */
    _Atomic(struct tcache *) owner;
    struct span *prev, *next;      /* partial list, or the pool */
    struct span *notify_next;
} __attribute__((aligned(64))) span; /* the fields a free touches share one cache line */

typedef struct tcache {
    cdm_heap *heap;
    span *current[CDM_HEAP_CLASSES];
    span *partial[CDM_HEAP_CLASSES];      /* spans with free blocks, newest first */
    span *partial_tail[CDM_HEAP_CLASSES]; /* the oldest: the one that has gathered most frees */
    _Atomic(span *) notify;        /* full spans that got remote frees: their remote pushers list them here */
    uint64_t allocs[CDM_HEAP_CLASSES]; /* owner increments; statistics read them relaxed */
    block *recent[CDM_HEAP_CLASSES];   /* freed blocks of its own spans, newest first; class 0 (8 B) has none */
    struct tcache *next_all, *next_orphan;
} tcache;

typedef struct free_extent {
    uint64_t start, pages;
    bool fresh;     /* never handed out: fresh address space, which reads zeros */
    bool populated; /* freed after use and not discarded: counts against the retention */
} free_extent;

typedef struct huge_alloc {
    uint8_t *base;
    uint64_t bytes;
    cdm_region *region; /* NULL: a plain mapping */
} huge_alloc;

struct cdm_heap {
    /* Kept across destroy and create: the slot's identity and locks. */
    pthread_mutex_t lock;       /* span pool, thread caches */
    pthread_mutex_t large_lock; /* extents and huge allocations */
    int id;
    _Atomic uint64_t generation;
    _Atomic bool alive;
    bool claimed;               /* under slots_lock: a create or a live heap holds the slot */
    pthread_cond_t unheld;      /* with large_lock: signalled when the last holder lets go */
    /* Reset by destroy, from here on. */
    cdm_engine *engine;
    int32_t placement;
    uint32_t flags;
    uint64_t retention, huge_threshold;
    int holders;                /* under large_lock: callers using region pointers the heap handed out */
    cdm_region *small_region;
    uint8_t *small_map;         /* where the area's mapping (or region) starts */
    uint8_t *small_base;        /* its first 64 KiB boundary: spans are aligned */
    uint64_t small_size, span_count, span_bump, pool_dirty, spans_in_use;
    span *spans, *pool;
    _Atomic uint64_t *bits;
    tcache *all, *orphans;
    cdm_region *large_region;
    uint8_t *large_map;
    uint8_t *large_base;        /* its first 2 MiB boundary */
    uint64_t large_pages, large_bump, large_live, retained, discarded;
    uint32_t *extent;
    free_extent *frees;
    uint64_t free_count, free_capacity;
    huge_alloc *huge;
    uint32_t huge_count;
    _Atomic uint64_t huge_live, peak, large_allocs, huge_allocs;
};



typedef struct tls_slot {
    tcache *tc;
    uint64_t generation;
} tls_slot;
/* Initial-exec: one instruction to reach, and small enough (256 bytes) for the static TLS room glibc keeps
 * for libraries loaded with dlopen, as .NET loads this one. */
extern __thread tls_slot heap_tls[CDM_HEAP_MAX] __attribute__((tls_model("initial-exec")));


extern cdm_heap heap_slots[CDM_HEAP_MAX];

static inline unsigned class_of(size_t bytes) {
    return heap_class_of_8[(bytes + 7) >> 3];
}

static inline span *span_of(cdm_heap *h, const void *p) {
    return &h->spans[((const uint8_t *)p - h->small_base) >> SPAN_SHIFT];
}

static inline bool in_small(const cdm_heap *h, const void *p) {
    return (uintptr_t)((const uint8_t *)p - h->small_base) < h->small_size;
}

static inline bool in_large(const cdm_heap *h, const void *p) {
    return (uintptr_t)((const uint8_t *)p - h->large_base) < h->large_pages * PAGE;
}

/* Whether p lies in the heap's span or extent area (not its huge allocations); no lock. */
static inline bool heap_owns(const cdm_heap *h, const void *p) {
    return in_small(h, p) || in_large(h, p);
}

/* Pushes a thread's recent blocks of a class back onto their spans' free lists. */
void recent_flush(cdm_heap *h, struct tcache *tc, unsigned cls);

/* A block the calling thread freed last, or a free block of its current span, for a small size; NULL: take
 * the slow path. */
static inline void *heap_malloc_fast(cdm_heap *h, size_t bytes) {
    if (likely(bytes <= CDM_HEAP_SMALL_MAX && !(h->flags & CDM_HEAP_CHECKED))) {
        tls_slot *slot = &heap_tls[h->id];
        if (likely(slot->generation == atomic_load_explicit(&h->generation, memory_order_relaxed))) {
            tcache *tc = slot->tc;
            unsigned cls = class_of(bytes);
            block *r = tc->recent[cls];
            if (likely(r)) {
                __atomic_store_n(&tc->recent[cls], r->next, __ATOMIC_RELAXED); /* statistics read it */
                tc->allocs[cls]++;
                return r;
            }
            span *s = tc->current[cls];
            block *b;
            if (likely(s && (b = s->free))) {
                s->free = b->next;
                s->used++;
                tc->allocs[cls]++;
                return b;
            }
        }
    }
    return NULL;
}

/* Frees a block of a span the calling thread owns that needs no bookkeeping beyond its free list:
 * true when done, false when the slow path must take it. */
static inline bool heap_free_fast(cdm_heap *h, void *p) {
    if (likely(in_small(h, p) && !(h->flags & CDM_HEAP_CHECKED))) {
        span *s = span_of(h, p);
        tls_slot *slot = &heap_tls[h->id];
        if (likely(slot->generation == atomic_load_explicit(&h->generation, memory_order_relaxed) &&
                   atomic_load_explicit(&s->owner, memory_order_relaxed) == slot->tc &&
                   atomic_load_explicit(&s->in_use, memory_order_relaxed))) {
            tcache *tc = slot->tc;
            unsigned cls = s->cls;
            if (likely(cls)) {
                block *b = p, *head = tc->recent[cls];
                uintptr_t depth = head ? head->depth : 0; /* the head was freed last: its line is hot */
                if (unlikely(depth >= RECENT_MAX)) {
                    recent_flush(h, tc, cls);
                    head = NULL;
                    depth = 0;
                }
                b->next = head;
                b->depth = depth + 1;
                __atomic_store_n(&tc->recent[cls], b, __ATOMIC_RELEASE); /* statistics read it, and its depth */
                return true;
            }
            if (tc->current[cls] == s || (s->in_partial && s->used > 1)) {
                block *b = p;
                b->next = s->free;
                s->free = b;
                s->used--;
                return true;
            }
        }
    }
    return false;
}
#endif
