/* LD_PRELOAD=libcdmmalloc.so: the whole process's malloc family on a CdmUserMem heap.
 *
 * Three heaps serve it: until the constructor has run (the dynamic loader and libc allocate before it)
 * and for the engine's own threads, a heap on plain anonymous memory, which never faults; the engine's
 * internal allocations go there too (this library is linked with --wrap for malloc, calloc, realloc
 * and free). Every other allocation comes from a heap on a CdmUserMem engine: faulted in by its fault
 * thread, placed on the node the environment names. A pointer no heap owns goes to glibc.
 *
 * Environment (read once, at start):
 *   CDM_MALLOC_DEVICE_MIB=N   add a coherent device node of N MiB and place the heap on it
 *   CDM_MALLOC_RETENTION_MIB  free memory kept populated for reuse (default 256)
 *   CDM_MALLOC_CHECKED=1      detect double and misplaced frees of small blocks
 *   CDM_MALLOC_VERBOSE=1      say on stderr how the heap was set up
 * Without full userfaultfd (refused, or user-mode-only for an unprivileged process, where system calls
 * on untouched pages would fail with EFAULT), or if the engine cannot start, the process runs on the
 * plain heap. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../heap_internal.h"

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_realloc(void *p, size_t bytes);
extern void __libc_free(void *p);

static cdm_heap *plain;
static pthread_once_t plain_once = PTHREAD_ONCE_INIT;
static _Atomic(cdm_heap *) engine_heap;

static void plain_make(void) {
    cdm_heap_options o = {.small_reserve = 4ull << 30, .large_reserve = 16ull << 30};
    if (cdm_heap_create(NULL, &o, &plain) != 0) plain = NULL;
}

static inline cdm_heap *plain_heap(void) {
    if (__builtin_expect(plain != NULL, 1)) return plain;
    pthread_once(&plain_once, plain_make);
    return plain;
}

static inline cdm_heap *heap_for_new(void) {
    cdm_heap *h = atomic_load_explicit(&engine_heap, memory_order_relaxed);
    return __builtin_expect(h && !cdm_engine_thread, 1) ? h : plain_heap();
}

/* The engine heap first, then the plain one, by address range alone; huge allocations by search. */
static inline cdm_heap *heap_holding(const void *p) {
    cdm_heap *h = atomic_load_explicit(&engine_heap, memory_order_relaxed);
    if (__builtin_expect(h && heap_owns(h, p), 1)) return h;
    if (plain && heap_owns(plain, p)) return plain;
    return cdm_heap_of(p);
}

static uint64_t env_u64(const char *name, uint64_t fallback) {
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    return *end ? fallback : n;
}

static void say(const char *text) {
    if (env_u64("CDM_MALLOC_VERBOSE", 0)) (void)!write(2, text, strlen(text));
}

__attribute__((constructor)) static void start(void) {
    plain_heap();
    cdm_engine *e;
    uint32_t mode;
    uint64_t missing;
    int rc = cdm_engine_create(16384, 1, 0, &e, &mode, &missing);
    if (rc < 0) {
        say("cdmmalloc: no CdmUserMem engine here (userfaultfd refused?); allocating from plain memory\n");
        return;
    }
    if (mode & CDM_MODE_USER_ONLY) {
        /* A program hands malloc'd memory to system calls (read into a fresh buffer): in user-mode-only
         * userfaultfd those fail with EFAULT on untouched pages, so this mode cannot serve a whole process. */
        say("cdmmalloc: userfaultfd is user-mode-only here (unprivileged); allocating from plain memory\n");
        cdm_engine_destroy(e);
        return;
    }
    cdm_heap_options o = {0};
    uint64_t device_mib = env_u64("CDM_MALLOC_DEVICE_MIB", 0);
    if (device_mib) {
        int32_t node, pinned, mlock_errno;
        if (cdm_node_add(e, device_mib << 20, &node, &pinned, &mlock_errno) == 0) o.placement = node;
        else say("cdmmalloc: the device node could not be created; placing on the host\n");
    }
    o.retention_bytes = env_u64("CDM_MALLOC_RETENTION_MIB", 256) << 20;
    if (env_u64("CDM_MALLOC_CHECKED", 0)) o.flags |= CDM_HEAP_CHECKED;
    cdm_heap *h;
    if (cdm_heap_create(e, &o, &h) < 0) {
        say("cdmmalloc: the heap could not be created; allocating from plain memory\n");
        cdm_engine_destroy(e);
        return;
    }
    atomic_store_explicit(&engine_heap, h, memory_order_release);
    say(o.placement ? "cdmmalloc: heap on a CdmUserMem device node\n" : "cdmmalloc: heap on CdmUserMem host memory\n");
}

EXPORT void *malloc(size_t bytes) {
    cdm_heap *h = heap_for_new();
    void *p = heap_malloc_fast(h, bytes);
    return __builtin_expect(p != NULL, 1) ? p : cdm_heap_malloc(h, bytes);
}

EXPORT void *calloc(size_t count, size_t size) {
    return cdm_heap_calloc(heap_for_new(), count, size);
}

EXPORT void free(void *p) {
    if (!p) return;
    cdm_heap *h = atomic_load_explicit(&engine_heap, memory_order_relaxed);
    if (__builtin_expect(h && heap_free_fast(h, p), 1)) return;
    int rc = h ? heap_free_owned(h, p) : 0;
    if (__builtin_expect(rc == 1, 1)) return;
    if (rc == 0 && plain) rc = heap_free_owned(plain, p);
    if (rc == 1) return;
    if (rc < 0) heap_free_failed(rc, p);
    /* Huge allocations, or memory glibc handed out. */
    if ((h = cdm_heap_of(p))) cdm_heap_free(h, p);
    else __libc_free(p);
}

EXPORT void *realloc(void *p, size_t bytes) {
    if (!p) return malloc(bytes);
    cdm_heap *h = heap_holding(p);
    return h ? cdm_heap_realloc(h, p, bytes) : __libc_realloc(p, bytes);
}

EXPORT void *reallocarray(void *p, size_t count, size_t size) {
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, bytes);
}

EXPORT void *aligned_alloc(size_t alignment, size_t bytes) {
    return cdm_heap_aligned_alloc(heap_for_new(), alignment, bytes);
}

EXPORT void *memalign(size_t alignment, size_t bytes) {
    return cdm_heap_aligned_alloc(heap_for_new(), alignment, bytes);
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t bytes) {
    return cdm_heap_posix_memalign(heap_for_new(), out, alignment, bytes);
}

EXPORT void *valloc(size_t bytes) {
    return cdm_heap_aligned_alloc(heap_for_new(), (size_t)sysconf(_SC_PAGESIZE), bytes);
}

EXPORT void *pvalloc(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return cdm_heap_aligned_alloc(heap_for_new(), page, (bytes + page - 1) / page * page);
}

EXPORT size_t malloc_usable_size(void *p) {
    cdm_heap *h = p ? heap_holding(p) : NULL;
    return h ? cdm_heap_malloc_usable_size(h, p) : 0;
}

/* The engine's own allocations (linked with --wrap): always from memory that never faults. */
void *__wrap_malloc(size_t bytes) { return cdm_heap_malloc(plain_heap(), bytes); }
void *__wrap_calloc(size_t count, size_t size) { return cdm_heap_calloc(plain_heap(), count, size); }
void *__wrap_realloc(void *p, size_t bytes) { return p ? cdm_heap_realloc(plain_heap(), p, bytes) : cdm_heap_malloc(plain_heap(), bytes); }
void __wrap_free(void *p) {
    if (p) cdm_heap_free(plain_heap(), p);
}
