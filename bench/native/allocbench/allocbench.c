/* Allocator workloads, written for CdmUserMem's quick mode. Run once per allocator, which is chosen by
 * LD_PRELOAD (glibc when none): `allocbench <workload>` prints one figure on stdout.
 *   small     ns per malloc+free of 16-256 bytes, 64 live at a time
 *   xthread   objects per second a producer allocates and a consumer frees (cross-thread frees)
 *   churn     threads per second created, doing 2000 small malloc/free pairs, and joined
 *   realloc   seconds to grow blocks from 16 B to 32 MiB by 1.3x with realloc, 10 times
 *   large     seconds to malloc, zero-fill and free 5-25 MiB blocks, 60 times
 *   pareto    malloc+free pairs per second, sizes Pareto-distributed (16 B to 256 KiB), 20000 live */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static inline uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Keeps a value alive so the compiler cannot drop an allocation. */
static volatile uintptr_t sink;
/* Called through a pointer the compiler cannot see through, so malloc + memset(0) is not turned into calloc. */
static void *(*volatile zero_fill)(void *, int, size_t) = memset;

static double small(void) {
    enum { Live = 64, Rounds = 20000000 };
    void *ring[Live] = {0};
    double t0 = now();
    for (int i = 0; i < Rounds; i++) {
        int k = i & (Live - 1);
        free(ring[k]);
        ring[k] = malloc(16 + (size_t)((i * 37) & 15) * 16);
        *(volatile char *)ring[k] = (char)i;
    }
    double ns = (now() - t0) * 1e9 / Rounds;
    for (int k = 0; k < Live; k++) free(ring[k]);
    return ns;
}

enum { RingSize = 4096, Objects = 4000000 };
static void *_Atomic ring[RingSize];

static void *consumer(void *arg) {
    (void)arg;
    for (int i = 0; i < Objects; i++) {
        void *p;
        while (!(p = atomic_exchange_explicit(&ring[i % RingSize], NULL, memory_order_acquire))) {}
        free(p);
    }
    return NULL;
}

static double xthread(void) {
    pthread_t c;
    double t0 = now();
    pthread_create(&c, NULL, consumer, NULL);
    for (int i = 0; i < Objects; i++) {
        void *p = malloc(32 + (size_t)(i & 7) * 32);
        *(volatile char *)p = 1;
        while (atomic_load_explicit(&ring[i % RingSize], memory_order_relaxed)) {}
        atomic_store_explicit(&ring[i % RingSize], p, memory_order_release);
    }
    pthread_join(c, NULL);
    return Objects / (now() - t0);
}

static void *churner(void *arg) {
    (void)arg;
    void *keep[16] = {0};
    for (int i = 0; i < 2000; i++) {
        free(keep[i & 15]);
        keep[i & 15] = malloc(24 + (size_t)(i & 31) * 8);
    }
    for (int k = 0; k < 16; k++) free(keep[k]);
    return NULL;
}

static double churn(void) {
    enum { Threads = 2000 };
    double t0 = now();
    for (int i = 0; i < Threads; i += 2) {
        pthread_t a, b;
        pthread_create(&a, NULL, churner, NULL);
        pthread_create(&b, NULL, churner, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    }
    return Threads / (now() - t0);
}

static double realloc_growth(void) {
    double t0 = now();
    for (int r = 0; r < 10; r++) {
        size_t size = 16;
        char *p = malloc(size);
        while (size < (32u << 20)) {
            size = size * 13 / 10 + 1;
            p = realloc(p, size);
            p[size - 1] = (char)size;
        }
        sink = (uintptr_t)p;
        free(p);
    }
    return now() - t0;
}

static double large(void) {
    double t0 = now();
    for (int i = 0; i < 60; i++) {
        size_t size = (5 + next() % 21) << 20;
        char *p = malloc(size);
        zero_fill(p, 0, size);
        sink = (uintptr_t)p[size / 2];
        free(p);
    }
    return now() - t0;
}

static double pareto(void) {
    enum { Live = 20000, Ops = 4000000 };
    void **slots = calloc(Live, sizeof *slots);
    /* Sizes drawn in advance, so the workload times only the allocator. */
    uint32_t *sizes = malloc(sizeof(uint32_t) * 65536);
    for (int i = 0; i < 65536; i++) {
        double u = (double)(next() % 1000000 + 1) / 1000001.0;
        double s = 16.0 / pow(u, 1.0 / 1.1);
        sizes[i] = s > 262144 ? 262144 : (uint32_t)s;
    }
    double t0 = now();
    for (int i = 0; i < Ops; i++) {
        uint32_t k = (uint32_t)(next() % Live);
        free(slots[k]);
        slots[k] = malloc(sizes[i & 65535]);
        *(volatile char *)slots[k] = 1;
    }
    double rate = Ops / (now() - t0);
    for (int k = 0; k < Live; k++) free(slots[k]);
    free(slots);
    free(sizes);
    return rate;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: allocbench small|xthread|churn|realloc|large|pareto\n");
        return 2;
    }
    const char *w = argv[1];
    double v = !strcmp(w, "small") ? small() : !strcmp(w, "xthread") ? xthread() : !strcmp(w, "churn") ? churn()
             : !strcmp(w, "realloc") ? realloc_growth() : !strcmp(w, "large") ? large() : !strcmp(w, "pareto") ? pareto() : -1;
    if (v < 0) {
        fprintf(stderr, "unknown workload %s\n", w);
        return 2;
    }
    printf("%.6g\n", v);
    return 0;
}
