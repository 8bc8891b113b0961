/* tests/fuzz/fuzz_dtrace.c - libFuzzer harness: the .dtrace reader and every exporter.
 *
 * A file that loads must build a model and export as JSON, DOT, HTML and text without a
 * crash, undefined behaviour or an endless loop (libFuzzer's -timeout catches those).
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink)
        sink = fopen("/dev/null", "w");
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f)
        return 0;
    struct dtr_snap s;
    int rc = dagger__trace_snap_load(&s, f);
    fclose(f);
    if (rc)
        return 0;
    struct dtr_model m;
    if (dagger__trace_model_build(&m, &s) == 0) {
        (void)dagger__trace_export_json(&m, sink);
        (void)dagger__trace_export_dot(&m, sink);
        (void)dagger__trace_export_html(&m, sink);
        (void)dagger__trace_export_text(&m, sink);
        dagger__trace_model_free(&m);
    }
    dagger__trace_snap_free(&s);
    return 0;
}
