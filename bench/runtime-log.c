/* bench/runtime-log.c — a logging stand-in for an OCI runtime binary, for bench/engine.py's PHASES=1 rounds
 * (compiled there into its temp dir, one copy per engine, named like the runtime it wraps).
 *
 * Built with -DRTLOG_REAL='"/path/of/the/real/runtime"' -DRTLOG_FILE='"/path/of/the/log"' (compile time, not
 * environment variables: conmon does not pass podman's environment on to the runtime). It appends
 * "begin MONO_NS PID ARGS..." to RTLOG_FILE, runs RTLOG_REAL with its own argv (fork, exec, wait: descriptors
 * and environment are inherited unchanged, so the engine's sync pipes and sockets reach the real runtime),
 * appends "end MONO_NS PID STATUS" and exits with the runtime's status. CLOCK_MONOTONIC, as python's
 * time.monotonic_ns(), so the lines line up with the bench's own timestamps. Cost: one extra fork+exec+wait
 * (~0.5 ms) per runtime call; a container init the real runtime leaves behind is reparented to the engine's
 * subreaper (berth's monitor, conmon) exactly as without the wrapper.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

#if !defined(RTLOG_REAL) || !defined(RTLOG_FILE)
#error "build with -DRTLOG_REAL='\"/path\"' -DRTLOG_FILE='\"/path\"'"
#endif

static void logline(const char *s) {
    int fd = open(RTLOG_FILE, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return;
    ssize_t r = write(fd, s, strlen(s)); /* one write: O_APPEND keeps lines of concurrent calls whole */
    (void)r;
    close(fd);
}

int main(int argc, char **argv) {
    const char *real = RTLOG_REAL;
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "begin %lld %d", now(), (int)getpid());
    for (int i = 1; i < argc && n < (int)sizeof buf - 2; i++)
        n += snprintf(buf + n, sizeof buf - n, " %s", argv[i]);
    if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    buf[n] = 0;
    logline(buf);
    pid_t pid = fork();
    if (pid == 0) {
        argv[0] = (char *)real;
        execv(real, argv);
        fprintf(stderr, "runtime-log: exec %s: %s\n", real, strerror(errno));
        _exit(127);
    }
    int status = 0;
    if (pid < 0) return 125;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    snprintf(buf, sizeof buf, "end %lld %d %d\n", now(), (int)getpid(), code);
    logline(buf);
    return code;
}
