/* Pressure (oversubscription): a device node over its high watermark has its least recently placed,
 * unpinned pages demoted by migration to the next node by distance, in the background, until it is down
 * to its low watermark, as kswapd demotes to a slower tier. The thread starts with the first node that
 * turns pressure on; allocations kick it, never wait for it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"

/* A page that may be demoted: its placement stamp, where it is. */
typedef struct candidate {
    uint32_t stamp;
    uint32_t region; /* index into the sweep's region array */
    uint64_t page;
} candidate;

/* Serial-number order: stamps wrap after 2^32 placements, and the live ones span far less than 2^31. */
static int by_stamp(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    int32_t d = (int32_t)(x->stamp - y->stamp);
    return d < 0 ? -1 : d > 0;
}

static int by_place(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->region != y->region) return x->region < y->region ? -1 : 1;
    return x->page < y->page ? -1 : x->page > y->page;
}

void pressure_kick(cdm_engine *e) {
    pthread_mutex_lock(&e->pressure.lock);
    e->pressure.kicked = true;
    pthread_cond_signal(&e->pressure.wake);
    pthread_mutex_unlock(&e->pressure.lock);
}

/* Pages at most one demotion batch covers. */
#define DEMOTE_BATCH 512

/* Demotes [first, +count) of r, all on node, to the first target of order with room. */
static uint64_t demote_run(cdm_region *r, uint64_t first, uint64_t count, int node, const int8_t *order, uint32_t order_len) {
    uint8_t out[DEMOTE_BATCH];
    uint64_t left_first = first, left_count = count, total = 0;
    for (uint32_t t = 0; t < order_len && left_count; t++) {
        if (migrate_batch(r, left_first, left_count, order[t], node, 2, NULL, WHY_MAKE(CDM_WHY_DEMOTED, 0), out) < 0) break;
        uint64_t moved = 0, short_from = left_count;
        for (uint64_t i = 0; i < left_count; i++) {
            if (out[i] == CDM_OUT_MIGRATED) moved++;
            else if (out[i] == CDM_OUT_NO_CAPACITY && short_from == left_count) short_from = i;
        }
        atomic_fetch_add(&r->engine->st.demoted, moved);
        total += moved;
        if (short_from == left_count) break;
        /* The target filled up at short_from: the rest tries the next one (pages moved meanwhile say so). */
        left_first += short_from;
        left_count -= short_from;
    }
    return total;
}

/* One demotion of node: the want least recently placed unpinned resident pages of every region. */
static uint64_t demote_node(cdm_engine *e, int node, uint64_t want, const int8_t *order, uint32_t order_len) {
    regions_ref refs;
    if (regions_take(e, &refs) < 0) return 0;
    int n = refs.count;
    cdm_region **regions = refs.all;
    uint64_t cap = e->nodes[node].pool.frames, count = 0, demoted = 0;
    candidate *c = malloc(cap * sizeof *c);
    for (int i = 0; c && i < n; i++) {
        cdm_region *r = regions[i];
        for (uint64_t p = 0; p < r->pages && count < cap && atomic_load(&r->device_pages) > 0; p++) {
            uint64_t w = region_word(r, p);
            if (PS_STATE(w) != PS_RESIDENT || PS_NODE(w) != node || PS_PINS(w)) continue;
            c[count++] = (candidate){atomic_load_explicit(&r->stamp[p], memory_order_relaxed), (uint32_t)i, p};
        }
    }
    if (c && count) {
        qsort(c, count, sizeof *c, by_stamp);
        if (want > count) want = count;
        qsort(c, want, sizeof *c, by_place);
        for (uint64_t i = 0; i < want;) {
            uint64_t j = i + 1;
            while (j < want && j - i < DEMOTE_BATCH && c[j].region == c[i].region && c[j].page == c[j - 1].page + 1) j++;
            demoted += demote_run(regions[c[i].region], c[i].page, j - i, node, order, order_len);
            i = j;
        }
    }
    free(c);
    regions_put(&refs);
    return demoted;
}

int cdm_node_demote(cdm_engine *e, int32_t node, uint64_t frames, const int8_t *order, uint32_t order_len, uint64_t *demoted) {
    *demoted = 0;
    if (engine_forked(e)) return CDM_E_FORKED;
    if (node <= CDM_HOST_NODE || node >= atomic_load(&e->node_count) || !order_valid(e, order, order_len, node)) return -EINVAL;
    *demoted = demote_node(e, node, frames, order, order_len);
    return 0;
}

static void *pressure_loop(void *arg) {
    cdm_engine *e = arg;
    cdm_engine_thread = 1;
    for (;;) {
        pthread_mutex_lock(&e->pressure.lock);
        if (!e->pressure.kicked && !e->pressure.stopping) {
            /* Also looks every 200 ms: frames freed elsewhere do not kick, allocations do. */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 200000000;
            if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&e->pressure.wake, &e->pressure.lock, &until);
        }
        bool stopping = e->pressure.stopping;
        e->pressure.kicked = false;
        pthread_mutex_unlock(&e->pressure.lock);
        if (stopping) return NULL;
        for (int node = 1; node < atomic_load(&e->node_count); node++) {
            device_node *dn = &e->nodes[node];
            pthread_mutex_lock(&e->pressure.lock);
            uint64_t low = dn->low;
            uint32_t order_len = dn->order_len;
            int8_t order[CDM_MAX_NODES + 1];
            memcpy(order, dn->order, order_len);
            pthread_mutex_unlock(&e->pressure.lock);
            pthread_mutex_lock(&dn->pool.lock);
            uint64_t used = dn->pool.used, high = dn->pool.high;
            bool offline = dn->pool.offline;
            pthread_mutex_unlock(&dn->pool.lock);
            if (high && !offline && used > high) demote_node(e, node, used - low, order, order_len);
        }
    }
}

int cdm_node_set_pressure(cdm_engine *e, int32_t node, uint64_t high, uint64_t low, const int8_t *order, uint32_t order_len) {
    if (engine_forked(e)) return CDM_E_FORKED;
    if (node <= CDM_HOST_NODE || node >= atomic_load(&e->node_count)) return -EINVAL;
    device_node *dn = &e->nodes[node];
    if (high) {
        if (low >= high || high > dn->pool.frames || !order_valid(e, order, order_len, node)) return -EINVAL;
    }
    pthread_mutex_lock(&e->pressure.lock);
    int rc = 0;
    if (high && !e->pressure.started) {
        rc = -pthread_create(&e->pressure.thread, NULL, pressure_loop, e);
        e->pressure.started = rc == 0;
    }
    if (rc == 0) {
        dn->low = low;
        dn->order_len = high ? order_len : 0;
        if (high) memcpy(dn->order, order, order_len);
        pthread_mutex_lock(&dn->pool.lock);
        dn->pool.high = high;
        dn->pool.kick = high ? e : NULL;
        bool over = high && dn->pool.used > high;
        pthread_mutex_unlock(&dn->pool.lock);
        if (over) {
            e->pressure.kicked = true;
            pthread_cond_signal(&e->pressure.wake);
        }
    }
    pthread_mutex_unlock(&e->pressure.lock);
    return rc;
}

void pressure_stop(cdm_engine *e) {
    pthread_mutex_lock(&e->pressure.lock);
    bool started = e->pressure.started;
    e->pressure.stopping = true;
    pthread_cond_signal(&e->pressure.wake);
    pthread_mutex_unlock(&e->pressure.lock);
    if (started) pthread_join(e->pressure.thread, NULL);
}
