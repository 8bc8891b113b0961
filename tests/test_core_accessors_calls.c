/* tests/test_core_accessors_calls.c - the body of tests/test_core_accessors.c built with
 * DAGGER_NO_INLINE_ACCESSORS: the accessors are plain calls here, and their names are not
 * macros. SPDX-License-Identifier: MIT
 */
#define DAGGER_NO_INLINE_ACCESSORS 1
#include <dagger.h>

#if defined(dagger_arg_i64) || defined(dagger_arg_ptr) || defined(dagger_tc_ctx) ||                \
    defined(dagger_args_count)
#error "DAGGER_NO_INLINE_ACCESSORS left an accessor macro defined"
#endif

int accessors_by_call(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out);

/* (bool, i64, f64, str, ptr to the context): the same sum as every_kind in the other file. */
int accessors_by_call(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    if (dagger_args_count(a) != 5 || dagger_arg_ptr(a, 4) != (void *)dagger_tc_ctx(tc))
        return dagger_fail(tc, DAGGER_ETASK, "count %zu or context differs", dagger_args_count(a));
    const char *s = dagger_arg_str(a, 3);
    *out = dagger_i64((dagger_arg_bool(a, 0) ? 1000 : 0) + dagger_arg_i64(a, 1) +
                      (int64_t)(dagger_arg_f64(a, 2) * 10) + (int64_t)(s ? s[0] : 0));
    return 0;
}
