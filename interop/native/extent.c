/* Contiguous reservations, as CMA gives drivers contiguous memory: a window of frames is chosen, held (its
 * free frames taken now, its other frames taken as the pages on them are migrated away, to other frames of
 * the node first), and handed out as one extent; placement never uses it until it is released. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "internal.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

struct cdm_extent {
    cdm_engine *engine;
    int node;
    uint64_t first, count;
    uint8_t *mapping; /* the caller's address the frames were moved to, or NULL (used in the arena) */
};

/* Who holds each frame of a node: a resident region page, or nothing known (free, an extent, in flight). */
typedef struct frame_owner {
    cdm_region *region;
    uint64_t page;
    bool pinned;
} frame_owner;

enum { COST_FREE = 0, COST_MOVABLE = 1, COST_PINNED = 2, COST_BLOCKED = 3 };

/* Maps every resident page on node to its frame. */
static void map_owners(cdm_engine *e, int node, regions_ref *refs, frame_owner *owners) {
    uint64_t frames = e->nodes[node].pool.frames;
    for (int i = 0; i < refs->count; i++) {
        cdm_region *r = refs->all[i];
        for (uint64_t p = 0; p < r->pages && atomic_load(&r->device_pages) > 0; p++) {
            uint64_t w = region_word(r, p);
            if (PS_STATE(w) != PS_RESIDENT || PS_NODE(w) != node || PS_FRAME(w) >= frames) continue;
            owners[PS_FRAME(w)] = (frame_owner){r, p, PS_PINS(w) > 0};
        }
    }
}

static uint8_t frame_cost(frame_pool *p, const frame_owner *owners, uint64_t f) {
    if (!((p->bitmap[f >> 6] >> (f & 63)) & 1)) return COST_FREE;
    if (!owners[f].region) return COST_BLOCKED;
    return owners[f].pinned ? COST_PINNED : COST_MOVABLE;
}

/* The window of n frames with no blocked frame and the fewest pinned, then movable, frames; UINT64_MAX when
 * every window holds a blocked frame. Counts are read once, under the pool's lock. */
static uint64_t best_window(frame_pool *p, const frame_owner *owners, uint64_t n, uint64_t *pinned, uint64_t *movable) {
    uint64_t best = UINT64_MAX, best_pinned = 0, best_movable = 0, counts[4] = {0};
    pthread_mutex_lock(&p->lock);
    for (uint64_t f = 0; f < p->frames; f++) {
        counts[frame_cost(p, owners, f)]++;
        if (f >= n) counts[frame_cost(p, owners, f - n)]--;
        if (f + 1 < n || counts[COST_BLOCKED]) continue;
        if (best == UINT64_MAX || counts[COST_PINNED] < best_pinned ||
            (counts[COST_PINNED] == best_pinned && counts[COST_MOVABLE] < best_movable)) {
            best = f + 1 - n;
            best_pinned = counts[COST_PINNED];
            best_movable = counts[COST_MOVABLE];
        }
    }
    pthread_mutex_unlock(&p->lock);
    *pinned = best_pinned;
    *movable = best_movable;
    return best;
}

/* Holds [start, +n): its free frames are taken now, the rest as they are freed. Refused (-ENOSPC) when the
 * node went offline, or when taking the window's free frames would eat into frames promised to migrations. */
static int hold_window(frame_pool *p, uint64_t start, uint64_t n) {
    uint64_t *map = calloc((n + 63) / 64, sizeof *map);
    if (!map) return -ENOMEM;
    pthread_mutex_lock(&p->lock);
    uint64_t free_in_window = 0;
    for (uint64_t f = start; f < start + n; f++) free_in_window += !((p->bitmap[f >> 6] >> (f & 63)) & 1);
    if (p->offline || p->used + p->reserved + free_in_window > p->frames) {
        pthread_mutex_unlock(&p->lock);
        free(map);
        return -ENOSPC;
    }
    p->held = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t f = start + i;
        if ((p->bitmap[f >> 6] >> (f & 63)) & 1) continue;
        p->bitmap[f >> 6] |= 1ull << (f & 63);
        p->used++;
        map[i >> 6] |= 1ull << (i & 63);
        p->held++;
    }
    p->held_map = map;
    atomic_store(&p->hold_start, start);
    atomic_store(&p->hold_count, n);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Ends the hold. Kept: the window's frames become the extent's. Else the frames it took are freed again. */
static void end_hold(frame_pool *p, bool kept) {
    pthread_mutex_lock(&p->lock);
    uint64_t start = p->hold_start, n = p->hold_count;
    atomic_store(&p->hold_count, 0);
    for (uint64_t i = 0; !kept && i < n; i++)
        if ((p->held_map[i >> 6] >> (i & 63)) & 1) {
            p->bitmap[(start + i) >> 6] &= ~(1ull << ((start + i) & 63));
            p->used--;
        }
    if (kept) p->extent_frames += n;
    free(p->held_map);
    p->held_map = NULL;
    p->held = 0;
    pthread_mutex_unlock(&p->lock);
}

static uint64_t held_now(frame_pool *p) {
    pthread_mutex_lock(&p->lock);
    uint64_t held = p->held;
    pthread_mutex_unlock(&p->lock);
    return held;
}

static void note_blocked(const uint8_t *out, uint64_t count, cdm_region *r, uint64_t first, uint64_t *blocked, uint32_t room,
                         uint32_t *blocked_count) {
    for (uint64_t j = 0; j < count; j++)
        if ((out[j] == CDM_OUT_PINNED || out[j] == CDM_OUT_SHARED) && *blocked_count < room)
            blocked[(*blocked_count)++] = (uint64_t)(r->base + (first + j) * PAGE); /* the kernel holds it */
}

/* Whether the page a frame of the window belonged to is still there. */
static bool still_on(const frame_owner *o, int node, uint64_t frame) {
    uint64_t w = region_word(o->region, o->page);
    return PS_STATE(w) == PS_RESIDENT && PS_NODE(w) == node && PS_FRAME(w) == frame;
}

typedef struct window_page {
    cdm_region *region;
    uint64_t page;
} window_page;

static int by_region_page(const void *a, const void *b) {
    const window_page *x = a, *y = b;
    if (x->region != y->region) return (uintptr_t)x->region < (uintptr_t)y->region ? -1 : 1;
    return x->page < y->page ? -1 : x->page > y->page;
}

/* Pages one evacuation batch spans. */
#define EVACUATE_SPAN 512

/* Migrates the pages on the window's frames: first to other frames of the node, in batches that span many
 * runs (a batch aimed at the node itself moves only pages on held frames: the others are there already),
 * then what found no frame there down order, run by run. Records up to room addresses of pinned pages. */
static void evacuate(cdm_engine *e, int node, uint64_t start, uint64_t n, const frame_owner *owners, const int8_t *order,
                     uint32_t order_len, uint64_t *blocked, uint32_t room, uint32_t *blocked_count) {
    uint8_t out[EVACUATE_SPAN];
    window_page *pages = malloc(n * sizeof *pages);
    uint64_t m = 0;
    for (uint64_t i = 0; pages && i < n; i++)
        if (owners[start + i].region) pages[m++] = (window_page){owners[start + i].region, owners[start + i].page};
    if (pages) qsort(pages, m, sizeof *pages, by_region_page);
    for (uint64_t i = 0; i < m;) {
        uint64_t j = i + 1;
        while (j < m && pages[j].region == pages[i].region && pages[j].page - pages[i].page < EVACUATE_SPAN) j++;
        uint64_t span = pages[j - 1].page - pages[i].page + 1, moved = 0;
        if (migrate_batch(pages[i].region, pages[i].page, span, node, node, 2, NULL, WHY_MAKE(CDM_WHY_COMPACTED, 0), out) == 0) {
            for (uint64_t k = 0; k < span; k++) moved += out[k] == CDM_OUT_MIGRATED;
            note_blocked(out, span, pages[i].region, pages[i].page, blocked, room, blocked_count);
        }
        atomic_fetch_add(&e->st.compacted, moved);
        i = j;
    }
    free(pages);
    /* What is left (all of it if the list could not be made): runs of consecutive pages on consecutive frames. */
    for (uint64_t i = 0; i < n; i++) {
        const frame_owner *o = &owners[start + i];
        if (!o->region || !still_on(o, node, start + i)) continue;
        uint64_t k = 1;
        while (i + k < n && k < 64 && owners[start + i + k].region == o->region && owners[start + i + k].page == o->page + k &&
               still_on(&owners[start + i + k], node, start + i + k))
            k++;
        uint64_t first = o->page, left = k;
        for (uint32_t t = pages ? 1 : 0; t <= order_len && left; t++) {
            int target = t == 0 ? node : order[t - 1];
            if (migrate_batch(o->region, first, left, target, node, 2, NULL, WHY_MAKE(CDM_WHY_COMPACTED, 0), out) < 0) break;
            uint64_t moved = 0, short_from = left;
            for (uint64_t j = 0; j < left; j++) {
                if (out[j] == CDM_OUT_MIGRATED) moved++;
                else if (out[j] == CDM_OUT_NO_CAPACITY && short_from == left) short_from = j;
            }
            note_blocked(out, short_from, o->region, first, blocked, room, blocked_count);
            atomic_fetch_add(&e->st.compacted, moved);
            first += short_from;
            left -= short_from;
        }
        i += k - 1;
    }
}

/* Frees frames [first, +count) of a node whose slots may be holes (moved out, or discarded by their user):
 * each hole gets a zero page first, as every free frame's slot must hold one; a frame whose slot cannot be
 * filled stays taken. */
static void refill_and_free(cdm_engine *e, int node, uint64_t first, uint64_t count) {
    frame_pool *p = &e->nodes[node].pool;
    uint8_t *base = frame_addr(e, node, first);
    for (uint64_t i = 0; i < count;) {
        uint64_t filled;
        int rc = fill_zero(e, base + i * PAGE, count - i, true, false, &filled);
        pool_free(p, first + i, filled);
        i += filled;
        if (rc == 0) continue;
        if (rc == -EEXIST) pool_free(p, first + i, 1); /* it holds its page */
        i++; /* any other error: that frame stays taken */
    }
}

static int map_extent(cdm_engine *e, cdm_extent *x, uint64_t address) {
    uint64_t len = x->count * PAGE;
    if (!budget_take(e, 1)) return CDM_E_MAPPING_BUDGET;
    int rc = inject_check(e, CDM_OP_MMAP);
    uint8_t *m = MAP_FAILED;
    if (rc == 0) {
        m = mmap((void *)address, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
        if (m == MAP_FAILED) rc = -errno;
        else if (m != (uint8_t *)address) rc = -EEXIST; /* an old kernel took the address as a hint */
    }
    if (rc == 0) rc = sys_madvise(e, m, len, MADV_NOHUGEPAGE);
    if (rc == 0 && e->locked) rc = sys_lock_on_fault(e, m, len);
    if (rc == 0) rc = uffd_register(e, m, len);
    uint64_t moved = 0;
    if (rc == 0) rc = uffd_move(e, m, frame_addr(e, x->node, x->first), len, false, &moved);
    if (rc == 0) {
        /* The frames are in; from now on the mapping is the caller's plain memory: a page the caller
         * discards there reads zeros, with no fault for the engine to serve. */
        rc = uffd_unregister(e, m, len);
        if (rc == 0) {
            x->mapping = m;
            return 0;
        }
        /* Still registered, a page the caller discards there would fault with nobody to serve it: undo. */
    }
    if (moved) {
        uint64_t back;
        uffd_move(e, frame_addr(e, x->node, x->first), m, moved, false, &back);
    }
    if (m != MAP_FAILED) munmap(m, len);
    budget_take(e, -1);
    return rc;
}

int cdm_extent_reserve(cdm_engine *e, int32_t node, uint64_t frames, const int8_t *order, uint32_t order_len, uint64_t address,
                       cdm_extent **out, uint64_t *first_frame, uint64_t *mapped, uint64_t *blocked, uint32_t *blocked_count) {
    uint32_t room = *blocked_count;
    *blocked_count = 0;
    *out = NULL;
    if (engine_forked(e)) return CDM_E_FORKED;
    /* An empty order is allowed: pages that find no other frame of the node then keep the window from being reserved. */
    if (node <= CDM_HOST_NODE || node >= atomic_load(&e->node_count) || frames == 0 || address % PAGE ||
        (order_len && !order_valid(e, order, order_len, node)))
        return -EINVAL;
    frame_pool *p = &e->nodes[node].pool;
    if (frames > p->frames || p->offline) return -ENOSPC;
    cdm_extent *x = calloc(1, sizeof *x);
    frame_owner *owners = calloc(p->frames, sizeof *owners);
    regions_ref refs = {0};
    int rc = !x || !owners ? -ENOMEM : 0;
    pthread_mutex_lock(&e->compaction_lock);
    bool holding = false;
    for (unsigned attempt = 0; rc == 0 && attempt < 4; attempt++) {
        if ((rc = regions_take(e, &refs)) < 0) break;
        memset(owners, 0, p->frames * sizeof *owners);
        map_owners(e, node, &refs, owners);
        uint64_t pinned, movable, start = best_window(p, owners, frames, &pinned, &movable);
        if (start == UINT64_MAX) {
            rc = -ENOSPC;
        } else if (pinned) {
            for (uint64_t f = start; f < start + frames; f++)
                if (owners[f].region && owners[f].pinned && *blocked_count < room)
                    blocked[(*blocked_count)++] = (uint64_t)(owners[f].region->base + owners[f].page * PAGE);
            rc = CDM_E_PINNED;
        } else if ((rc = hold_window(p, start, frames)) == 0) {
            holding = true;
            evacuate(e, node, start, frames, owners, order, order_len, blocked, room, blocked_count);
            if (held_now(p) == frames) {
                x->engine = e;
                x->node = node;
                x->first = start;
                x->count = frames;
                end_hold(p, true);
                holding = false;
                regions_put(&refs);
                break;
            }
            /* Pages that would not move (the kernel pins them, or they were busy): give the window back. */
            end_hold(p, false);
            holding = false;
            rc = *blocked_count ? CDM_E_PINNED : -EAGAIN;
        }
        regions_put(&refs);
        if (rc != -EAGAIN) break;
        rc = 0;
        *blocked_count = 0;
        sched_yield();
    }
    if (holding) end_hold(p, false);
    pthread_mutex_unlock(&e->compaction_lock);
    free(owners);
    if (rc == 0 && x->count == 0) rc = -EAGAIN;
    /* The frames held other regions' pages: an extent starts zeroed, as a first touch does. */
    if (rc == 0) memset(frame_addr(e, node, x->first), 0, x->count * PAGE);
    if (rc == 0 && address) {
        rc = map_extent(e, x, address);
        if (rc < 0) {
            pthread_mutex_lock(&p->lock);
            p->extent_frames -= x->count;
            pthread_mutex_unlock(&p->lock);
            refill_and_free(e, node, x->first, x->count);
        }
    }
    if (rc < 0) {
        free(x);
        return rc;
    }
    *out = x;
    *first_frame = x->first;
    *mapped = x->mapping ? (uint64_t)x->mapping : (uint64_t)frame_addr(e, node, x->first);
    return 0;
}

void cdm_extent_release(cdm_extent *x) {
    if (!x) return;
    cdm_engine *e = x->engine;
    frame_pool *p = &e->nodes[x->node].pool;
    if (engine_forked(e)) {
        free(x); /* the parent's frames: a child has no arenas */
        return;
    }
    if (x->mapping) {
        /* The caller's data goes with its mapping; the frames' slots, holes since the move, get zero pages. */
        munmap(x->mapping, x->count * PAGE);
        budget_take(e, -1);
    }
    pthread_mutex_lock(&p->lock);
    p->extent_frames -= x->count;
    pthread_mutex_unlock(&p->lock);
    refill_and_free(e, x->node, x->first, x->count);
    free(x);
}
