/* bench/spawn.c — the benchmark's process launcher (compiled static by bench.py into its temp dir).
 *
 * Why not spawn from python: ru_maxrss of a child includes the RSS high-water mark of the memory it had
 * BEFORE execve, i.e. a copy (fork) or share (vfork/posix_spawn) of the parent's ~16 MB python heap. This
 * launcher is a tiny static binary, so what wait4 reports is the runtime's own peak (plus < 0.5 MB).
 *
 * Usage: spawn RFD WFD. Protocol: requests on fd RFD, one per line, fields separated by TAB:
 *     run  ERRFILE [K=V ...] /abs/program arg...   -> "EXITCODE ELAPSED_NS MAXRSS_KIB\n" on fd WFD
 *     reap PID                                     -> "0 0 0\n" after waitpid(PID) (ECHILD ignored)
 * Children get stdin and stdout on /dev/null, stderr in ERRFILE. The launcher is a child subreaper (as
 * containerd's shim is): a container init whose `create` process exited is reparented here; orphans are
 * reaped with WNOHANG before each request, or explicitly with `reap`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv0) {
    if (argc != 3) { fprintf(stderr, "usage: spawn RFD WFD\n"); return 2; }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) { perror("prctl"); return 1; }
    int rfd = atoi(argv0[1]), wfd = atoi(argv0[2]);
    fcntl(rfd, F_SETFD, FD_CLOEXEC);
    fcntl(wfd, F_SETFD, FD_CLOEXEC);
    FILE *in = fdopen(rfd, "r"), *out = fdopen(wfd, "w");
    char *line = NULL;
    size_t cap = 0;
    int nenv = 0;
    while (environ[nenv]) nenv++;
    while (getline(&line, &cap, in) > 0) {
        line[strcspn(line, "\n")] = 0;
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        char *f[256];
        int n = 0;
        for (char *s = strtok(line, "\t"); s && n < 255; s = strtok(NULL, "\t")) f[n++] = s;
        f[n] = NULL;
        if (n >= 2 && !strcmp(f[0], "reap")) {
            waitpid(atoi(f[1]), NULL, 0);
            fprintf(out, "0 0 0\n");
            fflush(out);
            continue;
        }
        if (n < 3 || strcmp(f[0], "run")) { fprintf(out, "-1 0 0\n"); fflush(out); continue; }
        char *errfile = f[1];
        char **argv = f + 2;
        char *envp[nenv + 64];
        int e = 0;
        for (; e < nenv; e++) envp[e] = environ[e];
        while (argv[0] && argv[0][0] != '/' && strchr(argv[0], '=') && e < nenv + 63) envp[e++] = *argv++;
        envp[e] = NULL;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd >= 0) { dup2(fd, 2); if (fd != 2) close(fd); }
            execve(argv[0], argv, envp);
            dprintf(2, "spawn: exec %s: %s\n", argv[0], strerror(errno));
            _exit(127);
        }
        int status = 0;
        struct rusage ru = {0};
        if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) { fprintf(out, "-1 0 0\n"); fflush(out); continue; }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        fprintf(out, "%d %lld %ld\n", code, ns, ru.ru_maxrss);
        fflush(out);
    }
    return 0;
}
