/* tools/dagger-trace.c - convert a saved .dtrace into JSON, DOT, HTML or text; print its summary.
 *
 *   dagger-trace run.dtrace                      print the Execution Summary
 *   dagger-trace run.dtrace run.html run.json    write each output (format by extension)
 *   dagger-trace -s run.dtrace run.html          both
 *   dagger-trace --stats run.dtrace              counts as key=value lines (for scripts)
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "dagger/trace.h"
#include "trace/trace_int.h"

static void usage(FILE *f)
{
    fputs("usage: dagger-trace [-s] [--stats] TRACE.dtrace [OUT.json|.dot|.html|.txt|.dtrace ...]\n"
          "  with no OUT (or with -s) prints the execution summary;\n"
          "  --stats prints the counts as key=value lines.\n",
          f);
}

int main(int argc, char **argv)
{
    int summary = 0, stats = 0;
    const char *in = NULL;
    const char *outs[64];
    int nout = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-s") || !strcmp(a, "--summary")) {
            summary = 1;
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "dagger-trace: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!in) {
            in = a;
        } else if (nout < 64) {
            outs[nout++] = a;
        }
    }
    if (!in) {
        usage(stderr);
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < nout; i++) {
        rc = dagger_trace_convert(in, outs[i]);
        if (rc) {
            fprintf(stderr, "dagger-trace: %s -> %s: %s%s%s\n", in, outs[i],
                    dagger__trace_err_name(rc), dagger__trace_load_why()[0] ? ": " : "",
                    dagger__trace_load_why());
            return 1;
        }
    }
    if (summary || stats || nout == 0) {
        dagger_trace_stats_t st;
        rc = dagger_trace_file_summary(in, summary || (nout == 0 && !stats) ? stdout : NULL, &st);
        if (rc) {
            fprintf(stderr, "dagger-trace: %s: %s%s%s\n", in, dagger__trace_err_name(rc),
                    dagger__trace_load_why()[0] ? ": " : "", dagger__trace_load_why());
            return 1;
        }
        if (stats)
            printf("events=%llu\ndropped=%llu\ntasks=%llu\nspawned=%llu\nruns=%llu\n"
                   "finished=%llu\nfailed=%llu\ncancelled=%llu\nedges=%llu\nsteals=%llu\n"
                   "parks=%llu\nblocks=%llu\nthreads=%d\nwall_ns=%lld\nbusy_ns=%lld\n"
                   "critical_path_ns=%lld\n",
                   (unsigned long long)st.events, (unsigned long long)st.dropped,
                   (unsigned long long)st.tasks, (unsigned long long)st.spawned,
                   (unsigned long long)st.runs, (unsigned long long)st.finished,
                   (unsigned long long)st.failed, (unsigned long long)st.cancelled,
                   (unsigned long long)st.edges, (unsigned long long)st.steals,
                   (unsigned long long)st.parks, (unsigned long long)st.blocks, st.threads,
                   (long long)st.wall_ns, (long long)st.busy_ns, (long long)st.critical_path_ns);
    }
    return 0;
}
