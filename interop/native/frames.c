/* Device frame allocator: a bitmap with next-fit and a contiguity hint, so virtual runs stay file runs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static inline bool bit_get(const uint64_t *b, uint64_t i) { return (b[i >> 6] >> (i & 63)) & 1; }
static inline void bit_set(uint64_t *b, uint64_t i) { b[i >> 6] |= 1ull << (i & 63); }
static inline void bit_clear(uint64_t *b, uint64_t i) { b[i >> 6] &= ~(1ull << (i & 63)); }

int pool_init(frame_pool *p, uint64_t frames) {
    memset(p, 0, sizeof *p);
    p->bitmap = calloc((frames + 63) / 64, sizeof(uint64_t));
    if (!p->bitmap) return -ENOMEM;
    p->frames = frames;
    pthread_mutex_init(&p->lock, NULL);
    return 0;
}

void pool_destroy(frame_pool *p) {
    free(p->bitmap);
    p->bitmap = NULL;
    pthread_mutex_destroy(&p->lock);
}

/* Length of the free run starting at i, at most want. */
static uint64_t free_run(const frame_pool *p, uint64_t i, uint64_t want) {
    uint64_t n = 0;
    while (n < want && i + n < p->frames && !bit_get(p->bitmap, i + n)) n++;
    return n;
}

/* First free frame at or after i, or frames when there is none; wraps to 0 once when asked. */
static uint64_t next_free(const frame_pool *p, uint64_t i, bool wrap) {
    for (uint64_t scanned = 0; scanned < p->frames; scanned++, i++) {
        if (i == p->frames) {
            if (!wrap) break;
            i = 0;
        }
        if ((i & 63) == 0 && i + 64 <= p->frames && p->bitmap[i >> 6] == ~0ull) {
            scanned += 63;
            i += 63; /* a full word: skip it whole */
            continue;
        }
        if (!bit_get(p->bitmap, i)) return i;
    }
    return p->frames;
}

/* Allocates up to want contiguous frames: at hint when that run is free, else the first run that fits
 * all of want (so a large migration stays one mapping), else a partial run at the next-fit cursor.
 * *got = 0 when the pool is full. */
uint64_t pool_alloc(frame_pool *p, uint64_t want, uint64_t hint, uint64_t *got, cdm_reservation *res) {
    pthread_mutex_lock(&p->lock);
    uint64_t start = 0, n = 0;
    /* A reservation spends its own promise; everyone else may use only frames nobody was promised. */
    uint64_t taken = p->used + p->reserved;
    uint64_t allowed = p->offline ? 0 : res ? atomic_load(&res->left) : taken >= p->frames ? 0 : p->frames - taken;
    bool short_of_room = want > allowed;
    if (want > allowed) want = allowed;
    if (want == 0) {
        pthread_mutex_unlock(&p->lock);
        *got = 0;
        if (short_of_room && p->high && p->kick) pressure_kick(p->kick);
        return 0;
    }
    if (hint < p->frames) n = free_run(p, hint, want);
    if (n > 0) {
        start = hint;
    } else {
        if (p->frames - p->used >= want) {
            for (uint64_t i = next_free(p, 0, false); i < p->frames; i = next_free(p, i + n, false)) {
                n = free_run(p, i, want);
                if (n == want) { start = i; break; }
            }
        }
        if (n != want) {
            start = next_free(p, p->cursor, true);
            n = free_run(p, start, want);
        }
    }
    for (uint64_t k = 0; k < n; k++) bit_set(p->bitmap, start + k);
    p->used += n;
    if (res) {
        p->reserved -= n;
        atomic_fetch_sub(&res->left, n);
    }
    if (n) p->cursor = (start + n == p->frames) ? 0 : start + n;
    bool kick = p->high && p->kick && (short_of_room || n < want || p->used > p->high);
    pthread_mutex_unlock(&p->lock);
    if (kick) pressure_kick(p->kick);
    *got = n;
    return start;
}

/* Frees frames, but for those a compaction holds: they stay taken, now the extent's. Caller holds the lock. */
static void free_locked(frame_pool *p, uint64_t start, uint64_t count) {
    for (uint64_t k = 0; k < count; k++) {
        uint64_t f = start + k;
        if (p->held_map && pool_in_hold(p, f)) {
            uint64_t i = f - p->hold_start;
            p->held_map[i >> 6] |= 1ull << (i & 63);
            p->held++;
            continue;
        }
        bit_clear(p->bitmap, f);
        p->used--;
    }
}

void pool_free(frame_pool *p, uint64_t start, uint64_t count) {
    pthread_mutex_lock(&p->lock);
    free_locked(p, start, count);
    pthread_mutex_unlock(&p->lock);
}

int cdm_reserve(cdm_engine *e, int32_t node, uint64_t frames, cdm_reservation **out) {
    *out = NULL;
    if (node <= CDM_HOST_NODE || node >= atomic_load(&e->node_count)) return -EINVAL;
    cdm_reservation *res = calloc(1, sizeof *res);
    if (!res) return -ENOMEM;
    frame_pool *p = &e->nodes[node].pool;
    pthread_mutex_lock(&p->lock);
    bool fits = !p->offline && p->used + p->reserved <= p->frames && p->frames - p->used - p->reserved >= frames;
    if (fits) p->reserved += frames;
    pthread_mutex_unlock(&p->lock);
    if (!fits) {
        free(res);
        return -ENOSPC;
    }
    res->engine = e;
    res->node = node;
    atomic_store(&res->left, frames);
    *out = res;
    return 0;
}

void cdm_reservation_release(cdm_reservation *res) {
    if (!res) return;
    frame_pool *p = &res->engine->nodes[res->node].pool;
    pthread_mutex_lock(&p->lock);
    p->reserved -= atomic_load(&res->left);
    pthread_mutex_unlock(&p->lock);
    free(res);
}

void pool_give_back(frame_pool *p, uint64_t start, uint64_t count, cdm_reservation *res) {
    if (!res) {
        pool_free(p, start, count);
        return;
    }
    pthread_mutex_lock(&p->lock);
    for (uint64_t k = 0; k < count; k++) bit_clear(p->bitmap, start + k); /* drawn while the hold was set: never in it */
    p->used -= count;
    p->reserved += count;
    atomic_fetch_add(&res->left, count);
    pthread_mutex_unlock(&p->lock);
}
