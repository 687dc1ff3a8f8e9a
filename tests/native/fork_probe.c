/* fork() without exec for the tests: the child runs native code only, since a .NET runtime does not
 * survive fork without exec. */
#include <errno.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096u

/* The child checks that its copy holds what the parent had (touched pages: (page % 251) + 1 in every
 * byte; pages from touched_pages on: zeros), then writes value over the whole copy and reads it back.
 * Returns 0 with the child's exit code (0 = every check held), or -errno if fork failed. */
int cdmtest_fork_write(uint8_t *base, uint64_t pages, uint64_t touched_pages, uint8_t value, int32_t *child_exit) {
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        for (uint64_t p = 0; p < pages; p++) {
            uint8_t want = p < touched_pages ? (uint8_t)(p % 251 + 1) : 0;
            for (uint64_t i = 0; i < PAGE; i += 512)
                if (base[p * PAGE + i] != want) _exit(3);
        }
        for (uint64_t i = 0; i < pages * PAGE; i++) base[i] = value;
        for (uint64_t i = 0; i < pages * PAGE; i++)
            if (base[i] != value) _exit(4);
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -errno;
    *child_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return 0;
}

/* Forks a child that keeps its copy of the whole address space until cdmtest_release: while it lives,
 * every anonymous page is shared copy-on-write with it. Returns the child's pid (the write end of its
 * pipe in *hold_fd), or -errno. */
int cdmtest_fork_hold(int32_t *hold_fd) {
    int fds[2];
    if (pipe(fds) < 0) return -errno;
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        close(fds[1]);
        char c;
        while (read(fds[0], &c, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(fds[0]);
    *hold_fd = fds[1];
    return pid;
}

/* Lets a held child exit and reaps it; returns its exit code. */
int cdmtest_release(int32_t hold_fd, int32_t pid) {
    close(hold_fd);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -errno;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The child calls fn(arg, 0, 1) (an engine entry point such as cdm_region_populate) and exits 0 when it
 * returns expected: a child must be refused by the engine, whose threads live in the parent. */
int cdmtest_fork_call(int (*fn)(void *, uint64_t, uint64_t), void *arg, int expected, int32_t *child_exit) {
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) _exit(fn(arg, 0, 1) == expected ? 0 : 1);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -errno;
    *child_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return 0;
}
