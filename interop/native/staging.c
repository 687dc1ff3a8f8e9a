/* Staging slots and spare host pages. A slot is a hole (free, or waiting for a detached page) or holds
 * a page: a detached host page being copied, or a spare host page for device-to-host migrations. */
#include <errno.h>
#include <sys/mman.h>
#include "internal.h"

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

/* Frees the pages of slots and returns the slots; on failure they keep their pages and stay allocated,
 * so that no move ever lands on them. Locked areas refuse MADV_DONTNEED: they take its _LOCKED form. */
int staging_discard(cdm_engine *e, uint64_t slot, uint64_t count) {
    if (count == 0) return 0;
    int rc = staging_empty(e, slot, count);
    if (rc < 0) rc = staging_empty(e, slot, count);
    if (rc == 0) pool_free(&e->staging_pool, slot, count);
    return rc;
}

/* Frees the pages of slots the caller keeps allocated. */
int staging_empty(cdm_engine *e, uint64_t slot, uint64_t count) {
    return discard_pages(e, e->staging + slot * PAGE, count * PAGE);
}

/* Frees the pages of one of the engine's areas, locked or not. */
int discard_pages(cdm_engine *e, uint8_t *addr, uint64_t len) {
    return sys_madvise(e, addr, len, e->locked ? MADV_DONTNEED_LOCKED : MADV_DONTNEED);
}

/* Keeps populated slots as spare host pages while there is room, else frees them. */
void staging_recycle(cdm_engine *e, uint64_t slot, uint64_t count) {
    if (count == 0) return;
    pthread_mutex_lock(&e->spares.lock);
    bool kept = e->spares.pages + count <= e->spares.cap;
    if (kept) {
        uint32_t top = e->spares.ranges;
        if (top > 0 && e->spares.start[top - 1] + e->spares.count[top - 1] == slot) {
            e->spares.count[top - 1] += count;
        } else if (top < SPARE_RANGES) {
            e->spares.start[top] = slot;
            e->spares.count[top] = count;
            e->spares.ranges++;
        } else {
            kept = false;
        }
    }
    if (kept) e->spares.pages += count;
    pthread_mutex_unlock(&e->spares.lock);
    if (!kept) staging_discard(e, slot, count);
}

/* Takes up to want contiguous spare pages (from the end of the newest range); returns how many. */
uint64_t spare_take(cdm_engine *e, uint64_t want, uint64_t *slot) {
    pthread_mutex_lock(&e->spares.lock);
    uint64_t got = 0;
    uint32_t top = e->spares.ranges;
    if (top > 0) {
        uint64_t *count = &e->spares.count[top - 1];
        got = *count < want ? *count : want;
        *count -= got;
        *slot = e->spares.start[top - 1] + *count;
        if (*count == 0) e->spares.ranges--;
        e->spares.pages -= got;
    }
    pthread_mutex_unlock(&e->spares.lock);
    return got;
}
