/* Engine lifetime, device nodes and counters. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"

static void stop_readahead(cdm_engine *e) {
    pthread_mutex_lock(&e->ahead.lock);
    e->ahead.stopping = true;
    pthread_cond_signal(&e->ahead.wake);
    pthread_mutex_unlock(&e->ahead.lock);
    pthread_join(e->ahead.thread, NULL);
}

int cdm_engine_create(uint64_t mapping_budget, uint32_t copy_channels, cdm_engine **out, uint32_t *mode,
                      uint64_t *missing_features) {
    *out = NULL;
    cdm_engine *e = calloc(1, sizeof *e);
    if (!e) return -ENOMEM;
    int fd = uffd_open(mode, missing_features);
    if (fd < 0) {
        free(e);
        return fd;
    }
    e->uffd = fd;
    e->mode = *mode;
    e->mapping_budget = mapping_budget;
    e->node_count = 1;
    e->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_rwlock_init(&e->regions_lock, NULL);
    pthread_mutex_init(&e->nodes_lock, NULL);
    int rc = e->stop_fd < 0 ? -errno : channels_start(&e->copy, copy_channels);
    bool channels = rc == 0, ahead = false;
    pthread_mutex_init(&e->ahead.lock, NULL);
    pthread_cond_init(&e->ahead.wake, NULL);
    if (rc == 0) ahead = (rc = pthread_create(&e->ahead.thread, NULL, readahead_loop, e)) == 0;
    if (rc == 0) rc = pthread_create(&e->thread, NULL, fault_loop, e);
    if (rc > 0) rc = -rc;
    if (rc < 0) {
        if (ahead) stop_readahead(e);
        if (channels) channels_stop(&e->copy);
        if (e->stop_fd >= 0) close(e->stop_fd);
        close(e->uffd);
        free(e);
        return rc;
    }
    e->thread_started = true;
    *out = e;
    return 0;
}

void cdm_engine_destroy(cdm_engine *e) {
    if (!e) return;
    if (e->thread_started) {
        uint64_t one = 1;
        while (write(e->stop_fd, &one, sizeof one) < 0 && errno == EINTR) {}
        pthread_join(e->thread, NULL);
        stop_readahead(e);
    }
    channels_stop(&e->copy);
    for (int i = 1; i < e->node_count; i++) {
        device_node *n = &e->nodes[i];
        munmap(n->view, n->capacity);
        close(n->fd);
        pool_destroy(&n->pool);
    }
    close(e->stop_fd);
    close(e->uffd);
    pthread_rwlock_destroy(&e->regions_lock);
    pthread_mutex_destroy(&e->nodes_lock);
    pthread_mutex_destroy(&e->ahead.lock);
    pthread_cond_destroy(&e->ahead.wake);
    free(e);
}

void cdm_engine_stats(cdm_engine *e, cdm_stats *o) {
    o->faults_missing = e->st.faults_missing;
    o->faults_write_protect = e->st.faults_wp;
    o->pages_zero_filled_host = e->st.zero_filled;
    o->pages_first_touch_device = e->st.first_touch_device;
    o->first_touch_fallbacks = e->st.fallbacks;
    o->pages_migrated = e->st.migrated;
    o->migrations_aborted = e->st.aborted;
    o->budget_refusals = e->st.budget_refusals;
    o->mappings_in_use = e->mappings_in_use;
    o->mapping_budget = e->mapping_budget;
    o->pages_read_ahead = e->st.readahead;
}

/* MemAvailable from /proc/meminfo in bytes, or UINT64_MAX when it cannot be read. */
static uint64_t memory_available(void) {
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f) return UINT64_MAX;
    char line[128];
    unsigned long long kib = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
    fclose(f);
    return found ? (uint64_t)kib * 1024 : UINT64_MAX;
}

/* A device node's arena exists in full from creation, like device memory, and is pinned where allowed. */
int cdm_node_add(cdm_engine *e, uint64_t capacity, int32_t *node, int32_t *pinned, int32_t *mlock_errno) {
    *pinned = 0;
    *mlock_errno = 0;
    if (capacity == 0 || capacity % PAGE) return -EINVAL;
    /* Populating more than the machine can give would summon the OOM killer, not return an error. */
    if (capacity > memory_available()) return -ENOMEM;
    pthread_mutex_lock(&e->nodes_lock);
    int rc = 0, fd = -1;
    uint8_t *view = MAP_FAILED;
    if (e->node_count > CDM_MAX_NODES) { rc = -ENOSPC; goto out; }
    if (!budget_take(e, 1)) { rc = CDM_E_MAPPING_BUDGET; goto out; }
    fd = memfd_create("cdm-device-arena", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)capacity) < 0) { rc = -errno; goto fail; }
    if ((rc = fallocate(fd, 0, 0, (off_t)capacity)) < 0) { rc = -errno; goto fail; }
    view = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (view == MAP_FAILED) { rc = -errno; goto fail; }
    if (mlock(view, capacity) == 0) *pinned = 1; else *mlock_errno = errno;
    device_node *n = &e->nodes[e->node_count];
    if ((rc = pool_init(&n->pool, capacity / PAGE)) < 0) goto fail;
    n->fd = fd;
    n->view = view;
    n->capacity = capacity;
    n->pinned = *pinned;
    *node = e->node_count++;
    goto out;
fail:
    if (view != MAP_FAILED) munmap(view, capacity);
    if (fd >= 0) close(fd);
    budget_take(e, -1);
out:
    pthread_mutex_unlock(&e->nodes_lock);
    return rc;
}

/* The host node is pageable and unbounded: it reports its resident pages and a total of 0. */
int cdm_node_usage(cdm_engine *e, int32_t node, uint64_t *used, uint64_t *total) {
    if (node < 0 || node >= e->node_count) return -EINVAL;
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
