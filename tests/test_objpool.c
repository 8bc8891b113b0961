/* tests/test_objpool.c - the size-class object pools (src/common/objpool.c).
 *
 * Every size maps to a class that holds it (32, 64, 128, 256, 320, 512 .. 4096 bytes), objects
 * start on the alignment their size needs and never overlap, and objects freed on one thread and
 * taken by another in batches (the prefetch list of a batch included) are each handed out once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common/alloc.h"
#include "harness.h"

static const size_t sizes[] = {1,    24,   32,   33,   64,   65,   100,  128,  129, 200,
                               256,  257,  300,  320,  321,  384,  500,  512,  513, 1000,
                               1024, 1025, 2048, 2049, 4000, 4096, 4097, 10000};
#define NSIZES (sizeof sizes / sizeof sizes[0])

TEST(every_size_has_a_class_that_holds_it)
{
    for (size_t n = 1; n <= DAGGER__OBJ_MAX; n++) {
        int c = dagger__obj_class(n);
        ASSERT_TRUE(c >= 0 && c < DAGGER__OBJ_NCLASS);
        ASSERT_TRUE(dagger__obj_class_size(c) >= n);
        if (c > 0) /* the smallest class that holds it */
            ASSERT_TRUE(dagger__obj_class_size(c - 1) < n);
    }
    ASSERT_EQ(dagger__obj_class_size(dagger__obj_class(320)), 320);
    ASSERT_EQ(dagger__obj_class_size(dagger__obj_class(321)), 512);
    ASSERT_EQ(dagger__obj_class_size(DAGGER__OBJ_NCLASS - 1), DAGGER__OBJ_MAX);
}

/* Objects of each size: aligned, and filled whole without touching each other. */
TEST(objects_are_aligned_and_disjoint)
{
    enum { PER = 600 };
    static unsigned char *obj[NSIZES][PER];
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = sizes[s];
        size_t align = n >= 64 ? 64 : 32;
        for (int i = 0; i < PER; i++) {
            obj[s][i] = dagger__obj_alloc_any(n);
            ASSERT_TRUE(obj[s][i] != NULL);
            if (n <= DAGGER__OBJ_MAX)
                ASSERT_EQ((uintptr_t)obj[s][i] % align, 0);
            memset(obj[s][i], (int)(s * 31 + (size_t)i) & 0xff, n);
        }
    }
    long wrong = 0;
    for (size_t s = 0; s < NSIZES; s++)
        for (int i = 0; i < PER; i++) {
            unsigned char want = (unsigned char)((s * 31 + (size_t)i) & 0xff);
            for (size_t k = 0; k < sizes[s]; k++)
                wrong += obj[s][i][k] != want;
        }
    ASSERT_EQ(wrong, 0);
    for (size_t s = 0; s < NSIZES; s++)
        for (int i = 0; i < PER; i++)
            dagger__obj_free_any(obj[s][i], sizes[s]);
}

/* A producer allocates records of the task record's class (inline path) and stamps each with a
 * sequence number; a consumer checks the stamp and frees it. The consumer's list grows past the
 * spill mark and goes back to the producer in batches (with their prefetch lists): an object
 * handed out while still live would show another stamp. */
#define XFER_N 200000
#define XFER_RING 1024
struct rec {
    uint64_t seq;
    unsigned char body[320 - 2 * sizeof(uint64_t)];
    uint64_t tail;
};
_Static_assert(sizeof(struct rec) == 320, "the record class");
static struct rec *_Atomic ring[XFER_RING];
static _Atomic long bad;

static void *consumer(void *arg)
{
    (void)arg;
    for (uint64_t i = 0; i < XFER_N; i++) {
        struct rec *r;
        while (!(r = atomic_exchange(&ring[i % XFER_RING], NULL)))
            ;
        if (r->seq != i || r->tail != ~i || r->body[0] != (unsigned char)i ||
            r->body[sizeof r->body - 1] != (unsigned char)i)
            atomic_fetch_add(&bad, 1);
        r->seq = UINT64_MAX;
        dagger__obj_free(r, sizeof *r);
    }
    return NULL;
}

TEST(objects_freed_on_another_thread_come_back_once)
{
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, consumer, NULL), 0);
    for (uint64_t i = 0; i < XFER_N; i++) {
        struct rec *r = dagger__obj_alloc(sizeof *r);
        ASSERT_TRUE(r != NULL);
        ASSERT_EQ((uintptr_t)r % 64, 0);
        r->seq = i;
        r->tail = ~i;
        memset(r->body, (unsigned char)i, sizeof r->body);
        while (atomic_load(&ring[i % XFER_RING]) != NULL)
            ;
        atomic_store(&ring[i % XFER_RING], r);
    }
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(atomic_load(&bad), 0);
}

TEST_LIST(every_size_has_a_class_that_holds_it, objects_are_aligned_and_disjoint,
          objects_freed_on_another_thread_come_back_once)
