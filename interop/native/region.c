/* Regions: reserved anonymous ranges, their page-state tables, the lookup table the fault thread uses,
 * residency and pins. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"

/* Mappings a region holds: its range and its page tables (states, placement records, placement stamps). */
#define REGION_MAPPINGS 2

static uint64_t tables_bytes(uint64_t pages) { return pages * (sizeof(uint64_t) + 2 * sizeof(uint32_t)); }

bool budget_take(cdm_engine *e, int64_t delta) {
    uint64_t cur = atomic_load(&e->mappings_in_use);
    for (;;) {
        uint64_t next = cur + (uint64_t)delta;
        if (delta > 0 && next > e->mapping_budget) {
            atomic_fetch_add(&e->st.budget_refusals, 1);
            return false;
        }
        if (atomic_compare_exchange_weak(&e->mappings_in_use, &cur, next)) return true;
    }
}

/* Index of the first region whose base is above addr. Caller holds regions_lock. */
static int upper_bound(cdm_engine *e, uint64_t addr) {
    int lo = 0, hi = e->region_count;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if ((uint64_t)e->regions[mid]->base <= addr) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

cdm_region *region_get(cdm_engine *e, uint64_t addr) {
    pthread_rwlock_rdlock(&e->regions_lock);
    int i = upper_bound(e, addr) - 1;
    cdm_region *r = NULL;
    if (i >= 0 && addr < (uint64_t)e->regions[i]->base + e->regions[i]->size) {
        r = e->regions[i];
        atomic_fetch_add(&r->refs, 1);
    }
    pthread_rwlock_unlock(&e->regions_lock);
    return r;
}

void region_put(cdm_region *r) { atomic_fetch_sub_explicit(&r->refs, 1, memory_order_release); }

int regions_take(cdm_engine *e, regions_ref *out) {
    pthread_rwlock_rdlock(&e->regions_lock);
    out->count = e->region_count;
    out->all = malloc((size_t)(out->count ? out->count : 1) * sizeof *out->all);
    if (out->all)
        for (int i = 0; i < out->count; i++) {
            out->all[i] = e->regions[i];
            atomic_fetch_add(&out->all[i]->refs, 1);
        }
    else
        out->count = 0;
    pthread_rwlock_unlock(&e->regions_lock);
    return out->all ? 0 : -ENOMEM;
}

void regions_put(regions_ref *refs) {
    for (int i = 0; i < refs->count; i++) region_put(refs->all[i]);
    free(refs->all);
    refs->all = NULL;
    refs->count = 0;
}

static int table_insert(cdm_engine *e, cdm_region *r) {
    pthread_rwlock_wrlock(&e->regions_lock);
    if (e->region_count == e->region_capacity) {
        int cap = e->region_capacity ? e->region_capacity * 2 : 64;
        cdm_region **grown = realloc(e->regions, (size_t)cap * sizeof *grown);
        if (!grown) {
            pthread_rwlock_unlock(&e->regions_lock);
            return -ENOMEM;
        }
        e->regions = grown;
        e->region_capacity = cap;
    }
    int at = upper_bound(e, (uint64_t)r->base);
    memmove(&e->regions[at + 1], &e->regions[at], (size_t)(e->region_count - at) * sizeof *e->regions);
    e->regions[at] = r;
    e->region_count++;
    pthread_rwlock_unlock(&e->regions_lock);
    return 0;
}

static void table_remove(cdm_engine *e, cdm_region *r) {
    pthread_rwlock_wrlock(&e->regions_lock);
    for (int i = 0; i < e->region_count; i++)
        if (e->regions[i] == r) {
            memmove(&e->regions[i], &e->regions[i + 1], (size_t)(e->region_count - i - 1) * sizeof *e->regions);
            e->region_count--;
            break;
        }
    pthread_rwlock_unlock(&e->regions_lock);
}

int cdm_region_create(cdm_engine *e, uint64_t size, int32_t placement, uint32_t fault_around,
                      uint32_t readahead_pages, cdm_region **out, uint64_t *base) {
    *out = NULL;
    if (engine_forked(e)) return CDM_E_FORKED;
    if (size == 0 || size % PAGE || placement < 0 || placement >= atomic_load(&e->node_count)) return -EINVAL;
    if (fault_around == 0) fault_around = 1;
    if (!budget_take(e, REGION_MAPPINGS)) return CDM_E_MAPPING_BUDGET;
    cdm_region *r = calloc(1, sizeof *r);
    int rc = -ENOMEM;
    if (!r) goto fail;
    r->engine = e;
    r->size = size;
    r->pages = size / PAGE;
    r->placement = placement;
    r->fault_around = fault_around;
    r->readahead = readahead_pages;
    r->base = MAP_FAILED;
    r->pt = MAP_FAILED;
    r->base = sys_mmap(e, size, 0);
    if (r->base == MAP_FAILED) { rc = -errno; goto fail; }
    r->pt = sys_mmap(e, tables_bytes(r->pages), 0);
    if (r->pt == MAP_FAILED) { rc = -errno; goto fail; }
    r->why = (_Atomic uint32_t *)(r->pt + r->pages);
    r->stamp = r->why + r->pages;
    /* 4 KiB pages: the engine fills and moves single pages, and a THP would be split by the first. */
    if ((rc = sys_madvise(e, r->base, size, MADV_NOHUGEPAGE)) < 0) goto fail;
    if (e->locked && (rc = sys_lock_on_fault(e, r->base, size)) < 0) goto fail;
    if ((rc = uffd_register(e, r->base, size)) < 0) goto fail;
    if ((rc = table_insert(e, r)) < 0) {
        uffd_unregister(e, r->base, size);
        goto fail;
    }
    *out = r;
    *base = (uint64_t)r->base;
    return 0;
fail:
    if (r) {
        if (r->pt != MAP_FAILED) munmap((void *)r->pt, tables_bytes(r->pages));
        if (r->base != MAP_FAILED) munmap(r->base, size);
        free(r);
    }
    budget_take(e, -REGION_MAPPINGS);
    return rc;
}

/* Returns every device frame the region holds to its node. The frames' pages are in the region (the
 * arena slots are holes): each is moved back into its slot, or the slot is filled with a fresh zero
 * page, so that a free frame's slot always holds a page. Runs before the region is unmapped. */
static void release_device_frames(cdm_region *r) {
    cdm_engine *e = r->engine;
    for (uint64_t p = 0; p < r->pages && atomic_load(&r->device_pages) > 0; p++) {
        uint64_t w = region_word(r, p);
        unsigned s = PS_STATE(w);
        if (s == PS_EMPTY || s == PS_FAULTING || PS_NODE(w) == CDM_HOST_NODE) continue;
        uint64_t n = 1, frame = PS_FRAME(w);
        int node = PS_NODE(w);
        while (p + n < r->pages) {
            uint64_t wn = region_word(r, p + n);
            if (PS_STATE(wn) < PS_RESIDENT || PS_NODE(wn) != node || PS_FRAME(wn) != frame + n) break;
            n++;
        }
        uint8_t *slot = frame_addr(e, node, frame);
        if (node_private(e, node)) {
            region_frames_free(r, node, frame, n, NULL); /* never mapped: the pages are in their slots */
            atomic_fetch_sub(&r->device_pages, n);
            p += n - 1;
            continue;
        }
        uint64_t moved = 0;
        int rc = uffd_move(e, slot, r->base + p * PAGE, n * PAGE, false, &moved);
        if (rc == 0) region_frames_free(r, node, frame, n, NULL);
        else if (moved) region_frames_free(r, node, frame, moved / PAGE, NULL);
        for (uint64_t k = moved / PAGE; rc < 0 && k < n; k++) {
            /* Moved out only in part (a discarded or pinned page, a split area): the rest get fresh pages.
             * A slot that cannot get one stays allocated: the fault thread zeroes free frames in place,
             * and a hole there would make it fault on itself. */
            uint64_t one;
            if (uffd_move(e, slot + k * PAGE, r->base + (p + k) * PAGE, PAGE, false, &one) == 0 ||
                uffd_copy(e, slot + k * PAGE, e->zeros, PAGE, false, &one) == 0)
                region_frames_free(r, node, frame + k, 1, NULL);
            else
                group_uncharge(r, node, 1); /* the frame stays taken, but no longer the region's */
        }
        atomic_fetch_sub(&r->device_pages, n);
        p += n - 1;
    }
}

int cdm_region_destroy(cdm_region *r) {
    cdm_engine *e = r->engine;
    /* A fork() child must not touch the parent's registrations or arenas through the shared descriptor:
     * it drops only its own copy of the range. */
    if (engine_forked(e)) {
        munmap(r->base, r->size);
        munmap((void *)r->pt, tables_bytes(r->pages));
        free(r);
        return CDM_E_FORKED;
    }
    table_remove(e, r);
    readahead_forget(e, r);
    /* The fault and readahead threads hold a reference only for one short step, and never while a
     * toucher they released runs; a holder that was preempted gets the CPU back. */
    for (unsigned spins = 0; atomic_load_explicit(&r->refs, memory_order_acquire) > 0; spins++) {
        if (spins < 64) sched_yield();
        else usleep(20);
    }
    release_device_frames(r);
    /* Unregistering wakes every thread blocked on this range; they retry on plain anonymous memory. */
    uffd_unregister(e, r->base, r->size);
    atomic_fetch_sub(&e->host_pages, r->host_pages);
    group_uncharge(r, CDM_HOST_NODE, r->host_pages);
    munmap(r->base, r->size);
    munmap((void *)r->pt, tables_bytes(r->pages));
    budget_take(e, -REGION_MAPPINGS);
    free(r);
    return 0;
}

/* A page being filled is reported on the node it is filled on: it may be readable already. */
int cdm_region_residency(cdm_region *r, uint64_t first, uint64_t count, int8_t *nodes) {
    if (first > r->pages || count > r->pages - first) return -EINVAL;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t w = region_word(r, first + i);
        nodes[i] = PS_STATE(w) == PS_EMPTY ? -1 : (int8_t)PS_NODE(w);
    }
    return 0;
}

static void unpin_pages(cdm_region *r, uint64_t first, uint64_t count) {
    for (uint64_t p = first; p < first + count; p++) {
        uint64_t w = region_word(r, p);
        while (PS_PINS(w) > 0 && !region_cas(r, p, &w, w - PS_PIN_ONE)) {}
    }
}

/* Resolves the range and takes one pin on each page: migrations then report them Pinned and leave them
 * mapped where they are, so system calls may read and write them in any fault mode. */
int cdm_region_pin(cdm_region *r, uint64_t first, uint64_t count) {
    if (engine_forked(r->engine)) return CDM_E_FORKED;
    if (first > r->pages || count > r->pages - first) return -EINVAL;
    for (uint64_t p = first; p < first + count;) {
        uint64_t w = region_word(r, p);
        switch (PS_STATE(w)) {
        case PS_EMPTY: {
            uint64_t end = p + ZERO_CHUNK_PAGES < first + count ? p + ZERO_CHUNK_PAGES : first + count;
            int rc = resolve_first_touch(r, p, end - p, true);
            uffd_wake(r->engine, r->base + p * PAGE, (end - p) * PAGE);
            if (rc < 0) {
                unpin_pages(r, first, p - first);
                return rc;
            }
            continue;
        }
        case PS_RESIDENT:
            if (node_private(r->engine, PS_NODE(w))) {
                /* A pinned page is handed to system calls: it must be mapped. */
                int rc = private_bring_back(r, p, w);
                if (rc > 0) uffd_wake(r->engine, r->base + p * PAGE, PAGE);
                else if (rc == 0) sched_yield(); /* a migration holds it for a bounded step */
                else {
                    /* A toucher that faulted while this thread held the page was left to it: wake it. */
                    uffd_wake(r->engine, r->base + p * PAGE, PAGE);
                    unpin_pages(r, first, p - first);
                    return rc;
                }
                continue;
            }
            if (PS_PINS(w) == CDM_MAX_PINS) {
                unpin_pages(r, first, p - first);
                return CDM_E_PINNED;
            }
            if (region_cas(r, p, &w, w + PS_PIN_ONE)) p++;
            continue;
        default:
            sched_yield(); /* being filled or migrated: a bounded native step */
            continue;
        }
    }
    return 0;
}

int cdm_region_unpin(cdm_region *r, uint64_t first, uint64_t count) {
    if (first > r->pages || count > r->pages - first) return -EINVAL;
    unpin_pages(r, first, count);
    return 0;
}
