/* Placement policies (interned fallback orders, per-page targets and rules), placement records, and
 * hot-unplug of a device node by draining it. The managed side turns a policy into a pattern of targets
 * and a fallback order; first touches are placed here, on the fault thread, without asking it. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "internal.h"

const placement_plan *plan_of(const cdm_region *r, uint64_t w) {
    uint32_t id = EMPTY_PLAN(w);
    if (id == 0) id = atomic_load_explicit(&r->plan, memory_order_relaxed);
    return &r->engine->plans[id];
}

static bool node_valid(cdm_engine *e, int node) { return node >= 0 && node < atomic_load(&e->node_count); }

bool order_valid(cdm_engine *e, const int8_t *order, uint32_t order_len, int node) {
    if (order_len == 0 || order_len > CDM_MAX_NODES + 1) return false;
    for (uint32_t i = 0; i < order_len; i++)
        if (!node_valid(e, order[i]) || order[i] == node) return false;
    return true;
}

int cdm_plan_create(cdm_engine *e, const int8_t *nodes, uint32_t count, uint32_t *plan) {
    if (engine_forked(e)) return CDM_E_FORKED;
    if (count == 0 || count > CDM_MAX_NODES + 1) return -EINVAL;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (!node_valid(e, nodes[i]) || (seen >> nodes[i]) & 1) return -EINVAL;
        seen |= 1ull << nodes[i];
    }
    pthread_mutex_lock(&e->nodes_lock);
    /* Never plan 0: in an untouched word it stands for the region's default plan, whatever that is. */
    uint32_t n = atomic_load(&e->plan_count), id = 1;
    for (; id < n; id++)
        if (e->plans[id].count == count && memcmp(e->plans[id].nodes, nodes, count) == 0) break;
    int rc = 0;
    if (id == n) {
        if (n == CDM_MAX_PLANS) rc = CDM_E_PLAN_LIMIT;
        else {
            e->plans[n].count = count;
            memcpy(e->plans[n].nodes, nodes, count);
            atomic_store_explicit(&e->plan_count, n + 1, memory_order_release); /* written before it is named */
        }
    }
    pthread_mutex_unlock(&e->nodes_lock);
    if (rc == 0) *plan = id;
    return rc;
}

int cdm_region_set_default_plan(cdm_region *r, uint32_t plan) {
    if (plan >= atomic_load_explicit(&r->engine->plan_count, memory_order_acquire)) return -EINVAL;
    atomic_store(&r->plan, plan);
    return 0;
}

int cdm_region_set_policy(cdm_region *r, uint64_t first, uint64_t count, const int8_t *pattern, uint32_t pattern_len,
                          uint32_t plan, uint32_t rule) {
    cdm_engine *e = r->engine;
    if (engine_forked(e)) return CDM_E_FORKED;
    if (first > r->pages || count > r->pages - first || pattern_len == 0 || rule > CDM_MAX_RULE ||
        plan >= atomic_load_explicit(&e->plan_count, memory_order_acquire))
        return -EINVAL;
    for (uint32_t i = 0; i < pattern_len; i++)
        if (!node_valid(e, pattern[i])) return -EINVAL;
    for (uint64_t p = first; p < first + count; p++) {
        uint64_t w = region_word(r, p);
        uint64_t next = PS_EMPTY_WORD((uint64_t)pattern[p % pattern_len] + 1, plan, rule);
        /* A page faulting in now keeps the placement it started with. */
        while (PS_STATE(w) == PS_EMPTY && !region_cas(r, p, &w, next)) {}
    }
    return 0;
}

int cdm_region_explain(cdm_region *r, uint64_t page, int32_t *state, int32_t *node, uint32_t *rule, int32_t *why) {
    if (page >= r->pages) return -EINVAL;
    uint64_t w = region_word(r, page);
    *state = (int32_t)PS_STATE(w);
    if (PS_STATE(w) == PS_EMPTY) {
        *node = empty_target(r, w);
        *rule = EMPTY_RULE(w);
        *why = CDM_WHY_UNTOUCHED;
        return 0;
    }
    /* Written before the word was published: a page seen resident has its record. */
    uint32_t rec = atomic_load_explicit(&r->why[page], memory_order_relaxed);
    *node = PS_NODE(w);
    *rule = rec >> 8;
    *why = (int32_t)(rec & 0xFF);
    return 0;
}

static void set_offline(frame_pool *p, bool offline) {
    pthread_mutex_lock(&p->lock);
    p->offline = offline;
    pthread_mutex_unlock(&p->lock);
}

static uint64_t pool_used(frame_pool *p) {
    pthread_mutex_lock(&p->lock);
    uint64_t used = p->used;
    pthread_mutex_unlock(&p->lock);
    return used;
}

/* Pages at most one drain batch covers. */
#define DRAIN_BATCH 512

typedef struct drain_pass {
    uint64_t moved, pinned, no_room, blocked_addr;
} drain_pass;

/* Moves the resident pages of [first, first+count) that are on node to the first node of order with room;
 * each target sees only the pages still on node. */
static void drain_span(cdm_region *r, uint64_t first, uint64_t count, int node, const int8_t *order, uint32_t order_len,
                       drain_pass *pass) {
    uint8_t last[DRAIN_BATCH], out[DRAIN_BATCH];
    memset(last, CDM_OUT_NONE, count);
    for (uint32_t t = 0; t < order_len; t++) {
        bool any = false;
        for (uint64_t i = 0; i < count;) {
            uint64_t w = region_word(r, first + i);
            if (PS_STATE(w) == PS_EMPTY || PS_NODE(w) != node) { i++; continue; }
            uint64_t j = i + 1;
            while (j < count) {
                uint64_t wj = region_word(r, first + j);
                if (PS_STATE(wj) == PS_EMPTY || PS_NODE(wj) != node) break;
                j++;
            }
            if (migrate_batch(r, first + i, j - i, order[t], node, 4, NULL, WHY_MAKE(CDM_WHY_DRAINED, 0), out) < 0) return;
            for (uint64_t k = 0; k < j - i; k++) {
                last[i + k] = out[k];
                if (out[k] == CDM_OUT_MIGRATED) pass->moved++;
                else if (out[k] == CDM_OUT_NO_CAPACITY) any = true;
            }
            i = j;
        }
        if (!any) break; /* nothing was short of room: a later target would not help */
    }
    for (uint64_t i = 0; i < count; i++) {
        uint64_t w = region_word(r, first + i);
        if (PS_STATE(w) < PS_RESIDENT || PS_NODE(w) != node) continue;
        bool pinned = PS_PINS(w) || last[i] == CDM_OUT_PINNED || last[i] == CDM_OUT_SHARED;
        bool no_room = !pinned && last[i] == CDM_OUT_NO_CAPACITY;
        if (pinned) pass->pinned++;
        if (no_room) pass->no_room++;
        if ((pinned || no_room) && !pass->blocked_addr) pass->blocked_addr = (uint64_t)(r->base + (first + i) * PAGE);
    }
}

/* One sweep over every region: each run of pages on node is drained in batches. */
static int drain_pass_all(cdm_engine *e, int node, const int8_t *order, uint32_t order_len, drain_pass *pass) {
    regions_ref refs;
    if (regions_take(e, &refs) < 0) return -ENOMEM;
    for (int i = 0; i < refs.count; i++) {
        cdm_region *r = refs.all[i];
        for (uint64_t p = 0; p < r->pages && atomic_load(&r->device_pages) > 0;) {
            uint64_t w = region_word(r, p);
            if (PS_STATE(w) == PS_EMPTY || PS_NODE(w) != node) { p++; continue; }
            uint64_t q = p + 1;
            while (q < r->pages && q - p < DRAIN_BATCH) {
                uint64_t wq = region_word(r, q);
                if (PS_STATE(wq) == PS_EMPTY || PS_NODE(wq) != node) break;
                q++;
            }
            drain_span(r, p, q - p, node, order, order_len, pass);
            p = q;
        }
    }
    regions_put(&refs);
    return 0;
}

int cdm_node_drain(cdm_engine *e, int32_t node, const int8_t *order, uint32_t order_len, uint64_t *left_pages,
                   uint64_t *blocked_addr) {
    *left_pages = 0;
    *blocked_addr = 0;
    if (engine_forked(e)) return CDM_E_FORKED;
    if (node <= CDM_HOST_NODE || !node_valid(e, node) || !order_valid(e, order, order_len, node)) return -EINVAL;
    device_node *dn = &e->nodes[node];
    /* Offline in the same step as the check, so that no reservation starts in between (one checks offline
     * under this lock before it holds a window). */
    pthread_mutex_lock(&dn->pool.lock);
    uint64_t extents = dn->pool.extent_frames + atomic_load(&dn->pool.hold_count);
    if (!extents) dn->pool.offline = true;
    pthread_mutex_unlock(&dn->pool.lock);
    if (extents) {
        *left_pages = extents;
        return -EBUSY; /* contiguous reservations are the caller's to release */
    }
    drain_pass pass = {0};
    /* Pages in flight towards the node when it went offline land there within one batch: sweep until a
     * sweep finds nothing left, or moves nothing. */
    for (unsigned sweep = 0;; sweep++) {
        pass = (drain_pass){0};
        int rc = drain_pass_all(e, node, order, order_len, &pass);
        if (rc < 0) {
            set_offline(&dn->pool, false);
            return rc;
        }
        uint64_t used = pool_used(&dn->pool);
        if (used == 0) break;
        if (pass.moved == 0 && (pass.pinned || pass.no_room || sweep >= 64)) {
            set_offline(&dn->pool, false);
            *left_pages = used;
            *blocked_addr = pass.blocked_addr;
            return pass.pinned ? CDM_E_PINNED : CDM_E_NO_ROOM;
        }
        if (pass.moved == 0) sched_yield();
    }
    /* Every frame is free: give the memory back, since nothing allocates here again (a locked arena takes
     * MADV_DONTNEED_LOCKED). Should the kernel refuse, the arena keeps its pages until the engine goes. */
    discard_pages(e, dn->arena, dn->capacity);
    return 0;
}
