/* bench/startup/process.c - the floor: posix_spawn + waitpid of an empty program (this binary
 * with --empty), what starting any command costs before a runtime does anything.
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <spawn.h>
#include <sys/wait.h>

extern char **environ;
static const char *self;

static int one(int threads)
{
    (void)threads;
    char *argv[] = {(char *)self, "--empty", NULL};
    pid_t pid;
    if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0) {
        fprintf(stderr, "ERROR posix_spawn %s failed\n", self);
        return 1;
    }
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--empty"))
        return 0;
    int threads = startup_init(argc, argv);
    if (threads < 0)
        return 0;
    self = "/proc/self/exe";
    static char path[4096];
    if (realpath(self, path))
        self = path;
    return startup_run("process", threads, one);
}
