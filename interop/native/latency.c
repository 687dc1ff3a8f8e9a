/* Latency histograms: log-linear buckets of relaxed atomic counters, recorded by the engine's own threads
 * and read by anyone without a lock, so an exporter never waits on a fault. */
#include <errno.h>
#include "internal.h"

static uint32_t bucket_of(uint64_t ns) {
    if (ns < CDM_LAT_SUB_BUCKETS) return (uint32_t)ns;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(ns);
    uint32_t i = (msb - 2u) * CDM_LAT_SUB_BUCKETS + (uint32_t)((ns >> (msb - 3u)) & (CDM_LAT_SUB_BUCKETS - 1));
    return i < CDM_LAT_BUCKETS ? i : CDM_LAT_BUCKETS - 1;
}

void latency_record(cdm_engine *e, int which, uint64_t ns) {
    atomic_fetch_add_explicit(&e->latency[which].buckets[bucket_of(ns)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->latency[which].sum_ns, ns, memory_order_relaxed);
}

int latency_of_batch(uint64_t pages) {
    return pages <= 1 ? CDM_LAT_MIGRATE_PAGE : pages <= 16 ? CDM_LAT_MIGRATE_64K
         : pages <= 512 ? CDM_LAT_MIGRATE_2M : CDM_LAT_MIGRATE_LARGER;
}

void cdm_latency_enable(cdm_engine *e, int32_t on) {
    atomic_store_explicit(&e->record_latency, on != 0, memory_order_relaxed);
}

int cdm_latency_snapshot(cdm_engine *e, int32_t which, uint64_t *buckets, uint32_t bucket_count, uint64_t *sum_ns) {
    if (which < 0 || which >= CDM_LAT_COUNT || bucket_count != CDM_LAT_BUCKETS) return -EINVAL;
    for (uint32_t i = 0; i < CDM_LAT_BUCKETS; i++)
        buckets[i] = atomic_load_explicit(&e->latency[which].buckets[i], memory_order_relaxed);
    *sum_ns = atomic_load_explicit(&e->latency[which].sum_ns, memory_order_relaxed);
    return 0;
}
