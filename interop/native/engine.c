/* Engine lifetime, device nodes and counters. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include "cdm_heap.h"
#include "internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

__thread int cdm_engine_thread __attribute__((tls_model("initial-exec")));

/* Slots for detached host pages: enough for several concurrent 512-page batches; holes cost nothing. */
#define STAGING_SLOTS 32768u
/* Spare host pages kept at most (32 MiB). */
#define SPARE_CAP 8192u

static void stop_readahead(cdm_engine *e) {
    pthread_mutex_lock(&e->ahead.lock);
    e->ahead.stopping = true;
    pthread_cond_signal(&e->ahead.wake);
    pthread_mutex_unlock(&e->ahead.lock);
    pthread_join(e->ahead.thread, NULL);
}

/* Whether mlock is unbounded for this process (CAP_IPC_LOCK or an infinite RLIMIT_MEMLOCK). Locking is
 * all or nothing: UFFDIO_MOVE refuses to move between a locked and an unlocked area. */
static bool may_lock_everything(void) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur == RLIM_INFINITY) return true;
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0) return false;
    return (data[CAP_IPC_LOCK / 32].effective >> (CAP_IPC_LOCK % 32)) & 1;
}

static void release_engine(cdm_engine *e) {
    if (e->staging && e->staging != MAP_FAILED) munmap(e->staging, (uint64_t)e->staging_slots * PAGE);
    if (e->zeros && e->zeros != MAP_FAILED) munmap(e->zeros, ZERO_CHUNK_PAGES * PAGE);
    if (e->staging_pool.bitmap) pool_destroy(&e->staging_pool);
    if (e->pagemap_fd >= 0) close(e->pagemap_fd);
    if (e->stop_fd >= 0) close(e->stop_fd);
    if (e->uffd >= 0) close(e->uffd);
    free(e->regions);
    pthread_rwlock_destroy(&e->regions_lock);
    pthread_mutex_destroy(&e->nodes_lock);
    pthread_mutex_destroy(&e->ahead.lock);
    pthread_cond_destroy(&e->ahead.wake);
    pthread_mutex_destroy(&e->spares.lock);
    free(e);
}

int cdm_engine_create(uint64_t mapping_budget, uint32_t copy_channels, uint32_t flags, cdm_engine **out,
                      uint32_t *mode, uint64_t *missing_features) {
    *out = NULL;
    fork_lock_init();
    cdm_engine *e = calloc(1, sizeof *e);
    if (!e) return -ENOMEM;
    e->uffd = e->stop_fd = e->pagemap_fd = -1;
    pthread_rwlock_init(&e->regions_lock, NULL);
    pthread_mutex_init(&e->nodes_lock, NULL);
    pthread_mutex_init(&e->compaction_lock, NULL);
    pthread_mutex_init(&e->ahead.lock, NULL);
    pthread_cond_init(&e->ahead.wake, NULL);
    pthread_mutex_init(&e->spares.lock, NULL);
    pthread_mutex_init(&e->pressure.lock, NULL);
    pthread_cond_init(&e->pressure.wake, NULL);
    e->spares.cap = SPARE_CAP;
    int fd = uffd_open(flags, mode, missing_features);
    if (fd < 0) {
        release_engine(e);
        return fd;
    }
    e->uffd = fd;
    e->locked = may_lock_everything();
    if (e->locked) *mode |= CDM_MODE_LOCKED;
    e->mode = *mode;
    e->record_latency = true;
    e->generation = atomic_load(&fork_generation);
    e->mapping_budget = mapping_budget;
    atomic_store(&e->node_count, 1);
    e->plans[0] = (placement_plan){.count = 1, .nodes = {CDM_HOST_NODE}};
    atomic_store(&e->plan_count, 1);
    e->group_count = 1;
    int rc = 0;
    e->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    /* Tells a page shared copy-on-write with a child from one the kernel pins; optional. */
    e->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (e->stop_fd < 0) rc = -errno;
    if (rc == 0 && !budget_take(e, 2)) rc = CDM_E_MAPPING_BUDGET;
    if (rc == 0) {
        e->staging_slots = STAGING_SLOTS;
        e->staging = sys_mmap(e, (uint64_t)e->staging_slots * PAGE, 0);
        e->zeros = mmap(NULL, ZERO_CHUNK_PAGES * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (e->staging == MAP_FAILED || e->zeros == MAP_FAILED) rc = -errno;
    }
    /* Staging is the engine's own: a forked child must not share (and so pin) its pages. */
    if (rc == 0) rc = sys_madvise(e, e->staging, (uint64_t)e->staging_slots * PAGE, MADV_DONTFORK);
    if (rc == 0 && e->locked) rc = sys_lock_on_fault(e, e->staging, (uint64_t)e->staging_slots * PAGE);
    if (rc == 0) rc = uffd_register(e, e->staging, (uint64_t)e->staging_slots * PAGE);
    if (rc == 0) rc = pool_init(&e->staging_pool, e->staging_slots);
    if (rc < 0) {
        if (e->staging && e->staging != MAP_FAILED) budget_take(e, -2);
        release_engine(e);
        return rc;
    }
    bool channels = false, ahead = false;
    rc = channels_start(&e->copy, copy_channels);
    channels = rc == 0;
    if (rc == 0) ahead = (rc = pthread_create(&e->ahead.thread, NULL, readahead_loop, e)) == 0;
    if (rc == 0) rc = pthread_create(&e->thread, NULL, fault_loop, e);
    if (rc > 0) rc = -rc;
    if (rc < 0) {
        if (ahead) stop_readahead(e);
        if (channels) channels_stop(&e->copy);
        release_engine(e);
        return rc;
    }
    e->thread_started = true;
    *out = e;
    return 0;
}

void cdm_engine_destroy(cdm_engine *e) {
    if (!e) return;
    if (engine_forked(e)) {
        /* A fork() child has no engine threads, and no arenas or staging (MADV_DONTFORK): unmapping
         * those addresses could only hit what the child mapped there since. Its descriptors go. */
        close(e->uffd);
        close(e->stop_fd);
        if (e->pagemap_fd >= 0) close(e->pagemap_fd);
        return;
    }
    if (e->thread_started && !engine_forked(e)) {
        uint64_t one = 1;
        while (write(e->stop_fd, &one, sizeof one) < 0 && errno == EINTR) {}
        pthread_join(e->thread, NULL);
        stop_readahead(e);
        pressure_stop(e);
        channels_stop(&e->copy);
    }
    for (int i = 1; i < atomic_load(&e->node_count); i++) {
        device_node *n = &e->nodes[i];
        munmap(n->arena, n->capacity);
        pool_destroy(&n->pool);
    }
    release_engine(e);
}

void cdm_engine_stats(cdm_engine *e, cdm_stats *o) {
    o->faults_missing = e->st.faults_missing;
    o->faults_on_migrating = e->st.faults_on_migrating;
    o->pages_zero_filled_host = e->st.zero_filled;
    o->pages_first_touch_device = e->st.first_touch_device;
    o->first_touch_fallbacks = e->st.fallbacks;
    o->pages_migrated = e->st.migrated;
    o->migrations_aborted = e->st.aborted;
    o->budget_refusals = e->st.budget_refusals;
    o->mappings_in_use = e->mappings_in_use;
    o->mapping_budget = e->mapping_budget;
    o->pages_read_ahead = e->st.readahead;
    o->pages_refused_pinned = e->st.refused_pinned;
    o->pages_refused_shared = e->st.refused_shared;
    o->pages_refilled = e->st.refilled;
    o->fill_errors = e->st.fill_errors;
    o->fault_loop_errors = e->st.loop_errors;
    o->bytes_copied = e->st.bytes_copied;
    o->migrate_ns_detach = e->st.ns_detach;
    o->migrate_ns_copy = e->st.ns_copy;
    o->migrate_ns_attach = e->st.ns_attach;
    o->migrate_ns_release = e->st.ns_release;
    o->pages_unshared = e->st.unshared;
    o->pages_demoted = e->st.demoted;
    o->pages_compacted = e->st.compacted;
    o->private_faults = e->st.private_faults;
}

/* Bytes in a cgroup v2 memory file of this process's group, or UINT64_MAX ("max", or unreadable). */
static uint64_t cgroup_memory_value(const char *file) {
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return UINT64_MAX;
    char line[512], path[640];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = strncmp(line, "0::", 3) == 0;
    fclose(f);
    if (!found) return UINT64_MAX;
    line[strcspn(line, "\n")] = 0;
    snprintf(path, sizeof path, "/sys/fs/cgroup%s/%s", line + 3, file);
    f = fopen(path, "re");
    if (!f) return UINT64_MAX;
    unsigned long long v;
    bool ok = fscanf(f, "%llu", &v) == 1;
    fclose(f);
    return ok ? (uint64_t)v : UINT64_MAX;
}

/* What the machine and this process's cgroup can still give, in bytes. */
static uint64_t memory_available(void) {
    uint64_t avail = UINT64_MAX;
    FILE *f = fopen("/proc/meminfo", "re");
    if (f) {
        char line[128];
        unsigned long long kib;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
                avail = (uint64_t)kib * 1024;
                break;
            }
        fclose(f);
    }
    uint64_t max = cgroup_memory_value("memory.max"), cur = cgroup_memory_value("memory.current");
    if (max != UINT64_MAX && cur != UINT64_MAX) {
        uint64_t room = max > cur ? max - cur : 0;
        if (room < avail) avail = room;
    }
    return avail;
}

/* A device node's arena exists in full from creation, like device memory, and is locked where the
 * process may lock everything. */
int cdm_node_add(cdm_engine *e, uint64_t capacity, int32_t *node, int32_t *pinned, int32_t *mlock_errno) {
    *pinned = 0;
    *mlock_errno = 0;
    if (engine_forked(e)) return CDM_E_FORKED;
    if (capacity == 0 || capacity % PAGE) return -EINVAL;
    /* Populating more than the machine can give would summon the OOM killer, not return an error. */
    if (capacity > memory_available()) return -ENOMEM;
    pthread_mutex_lock(&e->nodes_lock);
    int rc = 0, count = atomic_load(&e->node_count);
    uint8_t *arena = MAP_FAILED;
    bool budget = false;
    if (count > CDM_MAX_NODES) { rc = CDM_E_NODE_LIMIT; goto out; }
    if (!(budget = budget_take(e, 1))) { rc = CDM_E_MAPPING_BUDGET; goto out; }
    arena = sys_mmap(e, capacity, 0);
    if (arena == MAP_FAILED) { rc = -errno; goto fail; }
    /* 4 KiB frames (a THP would be split by the first page moved out of it), never shared with a child. */
    if ((rc = sys_madvise(e, arena, capacity, MADV_NOHUGEPAGE)) < 0) goto fail;
    if ((rc = sys_madvise(e, arena, capacity, MADV_DONTFORK)) < 0) goto fail;
    if ((rc = sys_madvise(e, arena, capacity, MADV_POPULATE_WRITE)) < 0) goto fail;
    if (e->locked) {
        /* Locks the populated frames now, and the pages that later move back into the arena. */
        rc = sys_lock_on_fault(e, arena, capacity);
        if (rc < 0) { *mlock_errno = -rc; goto fail; }
        *pinned = 1;
    } else {
        *mlock_errno = EPERM;
    }
    /* Frames move out of the arena and back: it must be a registered destination. */
    if ((rc = uffd_register(e, arena, capacity)) < 0) goto fail;
    device_node *n = &e->nodes[count];
    if ((rc = pool_init(&n->pool, capacity / PAGE)) < 0) goto fail;
    n->arena = arena;
    n->capacity = capacity;
    n->pinned = *pinned;
    *node = count;
    atomic_store(&e->node_count, count + 1);
    goto out;
fail:
    if (arena != MAP_FAILED) munmap(arena, capacity);
    if (budget) budget_take(e, -1);
out:
    pthread_mutex_unlock(&e->nodes_lock);
    return rc;
}

/* The host node is pageable and unbounded: it reports its resident pages and a total of 0. */
int cdm_node_usage(cdm_engine *e, int32_t node, uint64_t *used, uint64_t *total) {
    if (node < 0 || node >= atomic_load(&e->node_count)) return -EINVAL;
    if (node == CDM_HOST_NODE) {
        *used = e->host_pages;
        *total = 0;
        return 0;
    }
    frame_pool *p = &e->nodes[node].pool;
    pthread_mutex_lock(&p->lock);
    *used = p->used;
    *total = p->frames;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

uint32_t cdm_abi_sizeof_stats(void) { return sizeof(cdm_stats); }

const char *cdm_abi_describe(void) {
    static char text[4096];
    snprintf(text, sizeof text,
             "CDM_PAGE_SIZE=%u;CDM_HOST_NODE=%d;CDM_MAX_NODES=%d;CDM_MAX_PINS=%d;"
             "CDM_E_NO_USERFAULTFD=%d;CDM_E_MISSING_FEATURE=%d;CDM_E_MAPPING_BUDGET=%d;CDM_E_FORKED=%d;"
             "CDM_E_NODE_LIMIT=%d;CDM_E_PINNED=%d;CDM_CREATE_USER_MODE_ONLY=%u;CDM_MODE_USER_ONLY=%u;"
             "CDM_MODE_DEV_USERFAULTFD=%u;CDM_MODE_LOCKED=%u;CDM_UFFD_FEATURE_MOVE=%llu;"
             "CDM_OUT_NONE=%d;CDM_OUT_MIGRATED=%d;CDM_OUT_ALREADY_THERE=%d;CDM_OUT_BUSY=%d;CDM_OUT_NO_CAPACITY=%d;"
             "CDM_OUT_PLACED=%d;CDM_OUT_MAPPING_BUDGET=%d;CDM_OUT_PENDING=%d;CDM_OUT_FAILED=%d;CDM_OUT_PINNED=%d;"
             "CDM_OUT_SHARED=%d;CDM_OP_MOVE=%d;CDM_OP_COPY=%d;CDM_OP_ZEROPAGE=%d;CDM_OP_WAKE=%d;CDM_OP_REGISTER=%d;"
             "CDM_OP_MMAP=%d;CDM_OP_MADVISE=%d;CDM_OP_POLL=%d;CDM_OP_READ=%d;CDM_OP_MLOCK=%d;CDM_OP_COUNT=%d;"
             "CDM_LAT_FAULT=%d;CDM_LAT_MIGRATE_PAGE=%d;CDM_LAT_MIGRATE_64K=%d;CDM_LAT_MIGRATE_2M=%d;"
             "CDM_LAT_MIGRATE_LARGER=%d;CDM_LAT_COUNT=%d;CDM_LAT_SUB_BUCKETS=%d;CDM_LAT_BUCKETS=%d;"
             "CDM_E_HEAP_FOREIGN=%d;CDM_E_HEAP_DOUBLE_FREE=%d;CDM_E_HEAP_NOT_BLOCK=%d;CDM_E_HEAP_LIMIT=%d;"
             "CDM_HEAP_SMALL_MAX=%u;CDM_HEAP_CLASSES=%d;CDM_HEAP_HUGE_DEFAULT=%llu;CDM_HEAP_MAX=%d;CDM_HEAP_CHECKED=%u;"
             "sizeof(cdm_heap_options)=%zu;sizeof(cdm_heap_stats)=%zu;sizeof(cdm_heap_range)=%zu;"
             "CDM_MAX_PLANS=%d;CDM_MAX_RULE=%d;CDM_E_PLAN_LIMIT=%d;CDM_E_NO_ROOM=%d;CDM_WHY_UNTOUCHED=%d;"
             "CDM_WHY_TARGET=%d;CDM_WHY_FALLBACK=%d;CDM_WHY_LAST_RESORT=%d;CDM_WHY_MIGRATED=%d;CDM_WHY_REBALANCED=%d;"
             "CDM_WHY_DRAINED=%d;CDM_WHY_DEMOTED=%d;CDM_WHY_COMPACTED=%d;CDM_WHY_GROUP_LIMIT=%d;CDM_MAX_GROUPS=%d;CDM_WHY_CPU_FAULT=%d;"
             "sizeof(cdm_stats)=%zu",
             CDM_PAGE_SIZE, CDM_HOST_NODE, CDM_MAX_NODES, CDM_MAX_PINS, CDM_E_NO_USERFAULTFD, CDM_E_MISSING_FEATURE,
             CDM_E_MAPPING_BUDGET, CDM_E_FORKED, CDM_E_NODE_LIMIT, CDM_E_PINNED, CDM_CREATE_USER_MODE_ONLY,
             CDM_MODE_USER_ONLY, CDM_MODE_DEV_USERFAULTFD, CDM_MODE_LOCKED, (unsigned long long)CDM_UFFD_FEATURE_MOVE,
             CDM_OUT_NONE, CDM_OUT_MIGRATED, CDM_OUT_ALREADY_THERE, CDM_OUT_BUSY, CDM_OUT_NO_CAPACITY, CDM_OUT_PLACED,
             CDM_OUT_MAPPING_BUDGET, CDM_OUT_PENDING, CDM_OUT_FAILED, CDM_OUT_PINNED, CDM_OUT_SHARED, CDM_OP_MOVE,
             CDM_OP_COPY, CDM_OP_ZEROPAGE, CDM_OP_WAKE, CDM_OP_REGISTER, CDM_OP_MMAP, CDM_OP_MADVISE, CDM_OP_POLL,
             CDM_OP_READ, CDM_OP_MLOCK, CDM_OP_COUNT, CDM_LAT_FAULT, CDM_LAT_MIGRATE_PAGE, CDM_LAT_MIGRATE_64K,
             CDM_LAT_MIGRATE_2M, CDM_LAT_MIGRATE_LARGER, CDM_LAT_COUNT, CDM_LAT_SUB_BUCKETS, CDM_LAT_BUCKETS,
             CDM_E_HEAP_FOREIGN, CDM_E_HEAP_DOUBLE_FREE, CDM_E_HEAP_NOT_BLOCK, CDM_E_HEAP_LIMIT, CDM_HEAP_SMALL_MAX,
             CDM_HEAP_CLASSES, (unsigned long long)CDM_HEAP_HUGE_DEFAULT, CDM_HEAP_MAX, CDM_HEAP_CHECKED,
             sizeof(cdm_heap_options), sizeof(cdm_heap_stats), sizeof(cdm_heap_range), CDM_MAX_PLANS, CDM_MAX_RULE,
             CDM_E_PLAN_LIMIT, CDM_E_NO_ROOM, CDM_WHY_UNTOUCHED, CDM_WHY_TARGET, CDM_WHY_FALLBACK, CDM_WHY_LAST_RESORT,
             CDM_WHY_MIGRATED, CDM_WHY_REBALANCED, CDM_WHY_DRAINED, CDM_WHY_DEMOTED, CDM_WHY_COMPACTED, CDM_WHY_GROUP_LIMIT,
             CDM_MAX_GROUPS, CDM_WHY_CPU_FAULT, sizeof(cdm_stats));
    return text;
}
