/* Baselines for the benchmarks: the least a native program must do for the same work, with no
 * page-state table, accounting or safety. Never used by the library. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096u

static int open_uffd(uint64_t features) {
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
    if (fd < 0) return -1;
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (ioctl(fd, UFFDIO_API, &api) < 0) { close(fd); return -1; }
    return fd;
}

static int register_range(int uffd, void *addr, uint64_t len, uint64_t mode) {
    struct uffdio_register reg = {.range = {.start = (uint64_t)addr, .len = len}, .mode = mode};
    return ioctl(uffd, UFFDIO_REGISTER, &reg);
}

/* An anonymous private range whose missing faults a bare resolver thread fills with zeroed pages
 * (UFFDIO_COPY from a zero page, as for a writer), as ours is laid out. */
typedef struct bl_resolver {
    int uffd, stop_fd;
    uint8_t *base, *zeros;
    uint64_t size, window;
    pthread_t thread;
} bl_resolver;

static void *resolver_loop(void *arg) {
    bl_resolver *b = arg;
    struct uffd_msg msgs[64];
    struct pollfd fds[2] = {{.fd = b->uffd, .events = POLLIN}, {.fd = b->stop_fd, .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, -1) < 0 && errno == EINTR) continue;
        if (fds[1].revents) return NULL;
        ssize_t n = read(b->uffd, msgs, sizeof msgs);
        for (ssize_t i = 0; i < n / (ssize_t)sizeof msgs[0]; i++) {
            uint64_t page = (msgs[i].arg.pagefault.address - (uint64_t)b->base) / PAGE;
            uint64_t start = page - page % b->window, len = b->window;
            if ((start + len) * PAGE > b->size) len = b->size / PAGE - start;
            struct uffdio_copy c = {.dst = (uint64_t)b->base + start * PAGE, .src = (uint64_t)b->zeros, .len = len * PAGE};
            if (ioctl(b->uffd, UFFDIO_COPY, &c) < 0 && errno == EEXIST) {
                struct uffdio_range r = {.start = (uint64_t)b->base + page * PAGE, .len = PAGE};
                ioctl(b->uffd, UFFDIO_WAKE, &r);
            }
        }
    }
}

bl_resolver *bl_resolver_create(uint64_t size, uint64_t window_pages) {
    bl_resolver *b = calloc(1, sizeof *b);
    b->size = size;
    b->window = window_pages ? window_pages : 1;
    b->uffd = open_uffd(0);
    b->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (b->uffd < 0) return NULL;
    b->zeros = mmap(NULL, b->window * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    b->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (b->base == MAP_FAILED || b->zeros == MAP_FAILED) return NULL;
    if (register_range(b->uffd, b->base, size, UFFDIO_REGISTER_MODE_MISSING) < 0) return NULL;
    pthread_create(&b->thread, NULL, resolver_loop, b);
    return b;
}

uint8_t *bl_resolver_base(bl_resolver *b) { return b->base; }

void bl_resolver_destroy(bl_resolver *b) {
    uint64_t one = 1;
    if (write(b->stop_fd, &one, sizeof one) < 0) return;
    pthread_join(b->thread, NULL);
    munmap(b->base, b->size);
    munmap(b->zeros, b->window * PAGE);
    close(b->uffd);
    close(b->stop_fd);
    free(b);
}

/* The first design's bare primitive sequence, the baseline migrations are measured against: a populated
 * memfd range and a second memfd to migrate into. */
typedef struct bl_migration {
    int uffd, src_fd, dst_fd;
    uint8_t *base, *dst_view;
    uint64_t size;
} bl_migration;

bl_migration *bl_migration_create(uint64_t size) {
    bl_migration *m = calloc(1, sizeof *m);
    m->size = size;
    m->uffd = open_uffd(UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
    m->src_fd = memfd_create("bl-src", MFD_CLOEXEC);
    m->dst_fd = memfd_create("bl-dst", MFD_CLOEXEC);
    if (m->uffd < 0 || ftruncate(m->src_fd, (off_t)size) < 0 || ftruncate(m->dst_fd, (off_t)size) < 0) return NULL;
    m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, m->src_fd, 0);
    m->dst_view = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, m->dst_fd, 0);
    if (m->base == MAP_FAILED || m->dst_view == MAP_FAILED) return NULL;
    memset(m->base, 0x5A, size);
    memset(m->dst_view, 0, size);
    if (register_range(m->uffd, m->base, size, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP) < 0) return NULL;
    return m;
}

/* Write-protect, copy, MAP_FIXED the destination, re-register, wake: one piece, as tight as it gets. */
int bl_migration_move(bl_migration *m, uint64_t offset, uint64_t len) {
    uint8_t *addr = m->base + offset;
    struct uffdio_writeprotect wp = {.range = {.start = (uint64_t)addr, .len = len}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(m->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) return -errno;
    memcpy(m->dst_view + offset, addr, len);
    if (mmap(addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m->dst_fd, (off_t)offset) == MAP_FAILED) return -errno;
    if (register_range(m->uffd, addr, len, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP) < 0) return -errno;
    struct uffdio_range r = {.start = (uint64_t)addr, .len = len};
    return ioctl(m->uffd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

void bl_migration_destroy(bl_migration *m) {
    munmap(m->base, m->size);
    munmap(m->dst_view, m->size);
    close(m->src_fd);
    close(m->dst_fd);
    close(m->uffd);
    free(m);
}
