/* Accounting groups, as memory cgroups account pages: regions of a group are charged for every page they
 * hold on each node, exactly, and a device node's limit turns placements over it away (first touches fall
 * back, migrations report no capacity). Frames are charged before they are taken, so no race overshoots. */
#include <errno.h>
#include "internal.h"

uint64_t group_charge(cdm_region *r, int node, uint64_t want, bool *limited) {
    if (limited) *limited = false;
    if (!r->group) return want;
    acct_group *g = &r->engine->groups[r->group];
    uint64_t used = atomic_load(&g->used[node]), limit = atomic_load(&g->limit[node]);
    for (;;) {
        uint64_t room = used >= limit ? 0 : limit - used, grant = want < room ? want : room;
        if (atomic_compare_exchange_weak(&g->used[node], &used, used + grant)) {
            if (limited) *limited = grant < want;
            return grant;
        }
    }
}

void group_uncharge(cdm_region *r, int node, uint64_t n) {
    if (r->group && n) atomic_fetch_sub(&r->engine->groups[r->group].used[node], n);
}

/* *limited: the group, not the node, kept the allocation short (the node gave all the group allowed). */
uint64_t region_frames_alloc(cdm_region *r, int node, uint64_t want, uint64_t hint, uint64_t *got, cdm_reservation *res, bool *limited) {
    uint64_t grant = group_charge(r, node, want, NULL), frame = 0;
    *got = 0;
    if (grant) frame = pool_alloc(&r->engine->nodes[node].pool, grant, hint, got, res);
    group_uncharge(r, node, grant - *got);
    if (limited) *limited = grant < want && *got == grant;
    return frame;
}

void region_frames_free(cdm_region *r, int node, uint64_t start, uint64_t count, cdm_reservation *res) {
    pool_give_back(&r->engine->nodes[node].pool, start, count, res);
    group_uncharge(r, node, count);
}

int cdm_group_create(cdm_engine *e, uint32_t *id) {
    if (engine_forked(e)) return CDM_E_FORKED;
    pthread_mutex_lock(&e->nodes_lock);
    uint32_t n = e->group_count;
    int rc = 0;
    if (n == CDM_MAX_GROUPS) rc = -ENOSPC;
    else {
        for (int i = 0; i <= CDM_MAX_NODES; i++) atomic_store(&e->groups[n].limit[i], UINT64_MAX);
        e->group_count = n + 1;
        *id = n;
    }
    pthread_mutex_unlock(&e->nodes_lock);
    return rc;
}

static bool group_valid(cdm_engine *e, uint32_t id) {
    pthread_mutex_lock(&e->nodes_lock);
    bool ok = id > 0 && id < e->group_count;
    pthread_mutex_unlock(&e->nodes_lock);
    return ok;
}

int cdm_group_set_limit(cdm_engine *e, uint32_t id, int32_t node, uint64_t frames) {
    if (!group_valid(e, id) || node <= CDM_HOST_NODE || node >= atomic_load(&e->node_count)) return -EINVAL;
    atomic_store(&e->groups[id].limit[node], frames);
    return 0;
}

int cdm_group_usage(cdm_engine *e, uint32_t id, int32_t node, uint64_t *frames) {
    if (!group_valid(e, id) || node < 0 || node >= atomic_load(&e->node_count)) return -EINVAL;
    *frames = atomic_load(&e->groups[id].used[node]);
    return 0;
}

int cdm_region_set_group(cdm_region *r, uint32_t id) {
    if (!group_valid(r->engine, id)) return -EINVAL;
    if (atomic_load(&r->host_pages) || atomic_load(&r->device_pages)) return -EBUSY; /* charges start from nothing */
    r->group = id;
    return 0;
}
