/* Discarding a region's pages with their frames: what MADV_DONTNEED is to anonymous memory, for pages that
 * may live on device nodes. The heap gives memory back through it, so that freed memory it keeps for reuse
 * holds no device frame and counts against no node or group. Discarded pages are untouched again and follow
 * the region's defaults (its placement and fallback order) at their next touch. */
#include <errno.h>
#include <sys/mman.h>
#include "internal.h"

/* Pages at most one run of region_discard covers: its pages' fates fit one mask. */
#define DISCARD_RUN 64

/* Pages [p, p+n) of r, resident and claimed (MIGRATING) by the caller, all on node (a device node) with
 * consecutive frames from frame: each goes back to its arena slot and its frame is freed. Returns the mask of
 * pages given back; the others (the kernel pins them) keep their frames and are discarded in place. */
static uint64_t give_back_frames(cdm_region *r, uint64_t p, uint64_t n, int node, uint64_t frame) {
    cdm_engine *e = r->engine;
    uint8_t *slot = frame_addr(e, node, frame), *at = r->base + p * PAGE;
    uint64_t moved = 0, given = 0;
    if (node_private(e, node)) moved = n * PAGE; /* never mapped: the pages are in their slots already */
    else uffd_move(e, slot, at, n * PAGE, false, &moved);
    for (uint64_t k = 0; k < n; k++) {
        if (k < moved / PAGE) {
            given |= 1ull << k;
            continue;
        }
        /* Where the run's move stopped, page by page. */
        uint64_t one;
        int rc = uffd_move(e, slot + k * PAGE, at + k * PAGE, PAGE, false, &one);
        if (rc == -ENOENT) rc = fill_zero(e, slot + k * PAGE, 1, true, false, &one); /* nothing mapped: the slot gets a zero page */
        else if (rc == -EEXIST) rc = discard_pages(e, at + k * PAGE, PAGE);      /* the slot holds a page: drop the region's */
        if (rc == 0 || rc == -EEXIST) given |= 1ull << k;
        else discard_pages(e, at + k * PAGE, PAGE); /* pinned by the kernel: it stays, discarded in place */
    }
    for (uint64_t k = 0; k < n; k++)
        if (given >> k & 1) region_frames_free(r, node, frame + k, 1, NULL);
    return given;
}

int region_discard(cdm_engine *e, uint8_t *addr, uint64_t len) {
    cdm_region *r = region_get(e, (uint64_t)addr);
    if (!r) return discard_pages(e, addr, len);
    uint64_t first = (uint64_t)(addr - r->base) / PAGE, end = first + len / PAGE;
    if (end > r->pages) end = r->pages;
    int err = 0;
    for (uint64_t p = first; p < end;) {
        uint64_t w = region_word(r, p);
        if (PS_STATE(w) == PS_EMPTY) { p++; continue; }
        if (PS_STATE(w) != PS_RESIDENT || PS_PINS(w) || !region_cas(r, p, &w, PS_WITH_STATE(w, PS_MIGRATING))) {
            /* Pinned or busy: discarded in place, as before (its next touch refills it on its node). */
            int rc = discard_pages(e, r->base + p * PAGE, PAGE);
            if (rc < 0 && !err) err = rc;
            p++;
            continue;
        }
        /* A run of claimed pages on one node (with consecutive frames on a device). */
        int node = PS_NODE(w);
        uint64_t frame = PS_FRAME(w), n = 1;
        while (p + n < end && n < DISCARD_RUN) {
            uint64_t wn = region_word(r, p + n);
            if (PS_STATE(wn) != PS_RESIDENT || PS_PINS(wn) || PS_NODE(wn) != node) break;
            if (node != CDM_HOST_NODE && PS_FRAME(wn) != frame + n) break;
            if (!region_cas(r, p + n, &wn, PS_WITH_STATE(wn, PS_MIGRATING))) break;
            n++;
        }
        uint64_t emptied = n == DISCARD_RUN ? ~0ull : (1ull << n) - 1; /* mask of the pages made untouched */
        if (node == CDM_HOST_NODE) {
            int rc = discard_pages(e, r->base + p * PAGE, n * PAGE);
            if (rc < 0) {
                if (!err) err = rc;
                emptied = 0; /* still mapped: they stay resident */
            } else {
                atomic_fetch_sub(&r->host_pages, n);
                atomic_fetch_sub(&e->host_pages, n);
                group_uncharge(r, CDM_HOST_NODE, n);
            }
        } else {
            emptied = give_back_frames(r, p, n, node, frame);
            atomic_fetch_sub(&r->device_pages, (uint64_t)__builtin_popcountll(emptied));
        }
        /* Untouched again, on the region's defaults: the next touch is placed as a first touch is (a page that
         * once fell back goes to the placement node again). The others stay resident, refilled on their node. */
        for (uint64_t k = 0; k < n; k++) {
            uint64_t cur = region_word(r, p + k);
            region_store(r, p + k, emptied >> k & 1 ? PS_EMPTY_WORD(0, 0, 0) : PS_WITH_STATE(cur, PS_RESIDENT));
        }
        /* A thread that touched one meanwhile waited on the claim: woken, it faults again and is served. */
        uffd_wake(e, r->base + p * PAGE, n * PAGE);
        p += n;
    }
    region_put(r);
    return err;
}
