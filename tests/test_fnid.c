/* tests/test_fnid.c - task functions across processes (src/net/fnid.c): a function travels as
 * (module build id, offset) or as a registered name, and a reference resolves to the same
 * function, or is refused with a message naming the build id (spelled out in hex) or the name.
 * The program's own functions take a cached path; a shared library's take the walk of every
 * module: both are checked, and so are the refusals of both, and the symbol names sent with
 * tasks that were given no name.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "net/net.h"

static int here(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)a;
    *out = dagger_i64(1);
    return 0;
}

static void ref_of(dagger_fn_t fn, struct dagger__fn_ref *ref)
{
    char why[256] = "";
    int rc = dagger__fn_ref(fn, ref, why, sizeof why);
    if (rc)
        fail_msg("dagger__fn_ref: %s", why);
    ASSERT_STR_EQ(ref->name, "");
    ASSERT_TRUE(ref->idlen > 0);
}

TEST(program_function_comes_back)
{
    struct dagger__fn_ref ref;
    ref_of(here, &ref);
    uint8_t id[DAGGER__BUILD_ID_MAX];
    int n = dagger__fn_program_id(id);
    ASSERT_EQ(ref.idlen, n);
    ASSERT_EQ(memcmp(ref.id, id, (size_t)n), 0);
    dagger_fn_t fn = NULL;
    char why[256] = "";
    ASSERT_OK(dagger__fn_resolve(&ref, &fn, why, sizeof why));
    ASSERT_TRUE(fn == here);
}

TEST(library_function_comes_back)
{
    dagger_fn_t lib = (dagger_fn_t)(uintptr_t)&puts; /* libc's code: another module */
    struct dagger__fn_ref ref;
    ref_of(lib, &ref);
    uint8_t id[DAGGER__BUILD_ID_MAX];
    int n = dagger__fn_program_id(id);
    ASSERT_FALSE(ref.idlen == n && memcmp(ref.id, id, (size_t)n) == 0);
    dagger_fn_t fn = NULL;
    char why[256] = "";
    ASSERT_OK(dagger__fn_resolve(&ref, &fn, why, sizeof why));
    ASSERT_TRUE(fn == lib);
}

/* The message a refusal must carry: `prefix` then the id in lower-case hex. */
static void assert_refused(const struct dagger__fn_ref *ref, const char *prefix)
{
    char hex[2 * DAGGER__BUILD_ID_MAX + 1], want[300], why[300] = "";
    dagger_fn_t fn = here;
    for (int i = 0; i < ref->idlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", ref->id[i]);
    snprintf(want, sizeof want, "%s%s", prefix, hex);
    ASSERT_EQ(dagger__fn_resolve(ref, &fn, why, sizeof why), DAGGER_EINVAL);
    ASSERT_TRUE(fn == NULL);
    ASSERT_STR_HAS(why, want);
}

TEST(offset_outside_the_code_is_refused)
{
    struct dagger__fn_ref ref;
    ref_of(here, &ref);
    ref.offset = (uint64_t)1 << 40;
    assert_refused(&ref, "offset 0x10000000000 is outside the code of the module with build id ");
    ref_of((dagger_fn_t)(uintptr_t)&puts, &ref);
    ref.offset = (uint64_t)1 << 40;
    assert_refused(&ref, "offset 0x10000000000 is outside the code of the module with build id ");
}

TEST(unknown_build_id_is_refused)
{
    struct dagger__fn_ref ref;
    ref_of(here, &ref);
    for (int i = 0; i < ref.idlen; i++)
        ref.id[i] ^= 0xa5;
    assert_refused(&ref, "no loaded module has build id ");
}

TEST(registered_name_travels_instead)
{
    ASSERT_OK(dagger_fn_register("fnid_here", here));
    struct dagger__fn_ref ref;
    char why[256] = "";
    ASSERT_OK(dagger__fn_ref(here, &ref, why, sizeof why));
    ASSERT_STR_EQ(ref.name, "fnid_here");
    dagger_fn_t fn = NULL;
    ASSERT_OK(dagger__fn_resolve(&ref, &fn, why, sizeof why));
    ASSERT_TRUE(fn == here);
    snprintf(ref.name, sizeof ref.name, "%s", "fnid_nobody");
    ASSERT_EQ(dagger__fn_resolve(&ref, &fn, why, sizeof why), DAGGER_EINVAL);
    ASSERT_STR_HAS(why, "no function is registered as 'fnid_nobody'");
}

/* The name sent with a task that was given none: dladdr's, kept for the program's functions. */
TEST(symbol_names_of_functions)
{
    ASSERT_STR_EQ(dagger__fn_symbol((dagger_fn_t)(uintptr_t)&puts), "puts");
    ASSERT_STR_EQ(dagger__fn_symbol((dagger_fn_t)(uintptr_t)&puts), "puts"); /* not kept */
    const char *a = dagger__fn_symbol(here), *b = dagger__fn_symbol(here);
    ASSERT_TRUE(a == b); /* kept: the program is never unloaded */
    /* a static function is in the dynamic symbols only with -rdynamic */
    ASSERT_TRUE(strcmp(a, "here") == 0 || strcmp(a, "task") == 0);
    ASSERT_STR_EQ(dagger__fn_symbol((dagger_fn_t)(uintptr_t)&puts), "puts");
}

TEST_LIST(program_function_comes_back, library_function_comes_back,
          offset_outside_the_code_is_refused, unknown_build_id_is_refused,
          registered_name_travels_instead, symbol_names_of_functions);
