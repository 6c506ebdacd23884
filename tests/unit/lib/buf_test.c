/*
 * buf_test.c — lib/buf: alignment, refcounts across threads, wrap with a
 * custom free, copy.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include "lib/buf.h"
#include "lib/common.h"

Test(buf, new_is_aligned_and_empty)
{
    size_t sizes[] = { 0, 1, 4095, 4096, 4097, 1 << 20 };
    for (size_t i = 0; i < KB_ARRAY_SIZE(sizes); i++) {
        kb_buf_t *b = kb_buf_new(sizes[i]);
        cr_assert_not_null(b);
        cr_assert_eq((uintptr_t)b->data % 4096, 0);
        cr_assert_geq(b->cap, sizes[i]);
        cr_assert_eq(b->cap % 4096, 0);
        cr_assert_eq(b->len, 0);
        cr_assert_eq(b->refs, 1);
        memset(b->data, 0x5a, b->cap);   /* ASan: the whole capacity is ours */
        kb_buf_unref(b);
    }
}

Test(buf, copy_holds_data)
{
    kb_buf_t *b = kb_buf_copy("hello world", 11);
    cr_assert_eq(b->len, 11);
    cr_assert_arr_eq(b->data, "hello world", 11);
    cr_assert_eq((uintptr_t)b->data % 4096, 0);
    kb_buf_unref(b);
}

static int freed_count;
static void *freed_data;
static void count_free(void *opaque, void *data)
{
    cr_assert_eq(opaque, &freed_count);
    freed_count++;
    freed_data = data;
}

Test(buf, wrap_custom_free_runs_once_at_last_unref)
{
    static char storage[100];
    kb_buf_t *b = kb_buf_wrap(storage, 100, count_free, &freed_count);
    cr_assert_eq(b->len, 100);
    cr_assert_eq(kb_buf_ref(b), b);
    kb_buf_ref(b);
    kb_buf_unref(b);
    kb_buf_unref(b);
    cr_assert_eq(freed_count, 0);
    kb_buf_unref(b);
    cr_assert_eq(freed_count, 1);
    cr_assert_eq(freed_data, storage);
}

Test(buf, wrap_null_fn_frees_malloced)
{
    char *p = malloc(10);
    kb_buf_t *b = kb_buf_wrap(p, 10, NULL, NULL);
    kb_buf_unref(b);   /* LeakSanitizer checks p was freed */
}

Test(buf, null_safe)
{
    cr_assert_null(kb_buf_ref(NULL));
    kb_buf_unref(NULL);
}

static void *hammer(void *arg)
{
    kb_buf_t *b = arg;
    for (int i = 0; i < 100000; i++) {
        kb_buf_ref(b);
        kb_buf_unref(b);
    }
    kb_buf_unref(b);   /* the reference this thread was given */
    return NULL;
}

Test(buf, refcount_atomic_across_threads)
{
    freed_count = 0;
    kb_buf_t *b = kb_buf_wrap(malloc(8), 8, count_free, &freed_count);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, kb_buf_ref(b));
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(b->refs, 1);
    cr_assert_eq(freed_count, 0);
    void *data = b->data;
    kb_buf_unref(b);
    cr_assert_eq(freed_count, 1);
    free(data);
}

Test(buf, big_buffers_are_cached_and_reused)
{
    kb_buf_t *a = kb_buf_new(1 << 20);
    cr_assert_eq(a->cap, 1u << 20);
    char *mem = a->data;
    memset(a->data, 1, a->cap);
    kb_buf_unref(a);
    kb_buf_t *b = kb_buf_new((1 << 20) - 5000);
    cr_assert_eq(b->data, mem, "the cached area is handed out again");
    cr_assert_eq(b->cap, 1u << 20, "rounded up to its class");
    cr_assert_eq(b->len, 0);
    kb_buf_t *c = kb_buf_new(1 << 20);
    cr_assert_neq(c->data, mem);
    cr_assert_eq((uintptr_t)c->data % 4096, 0);
    kb_buf_unref(b);
    kb_buf_unref(c);

    kb_buf_t *odd = kb_buf_new((4u << 20) + 1);   /* above the classes: exact, not cached */
    cr_assert_eq(odd->cap, (4u << 20) + 4096);
    memset(odd->data, 2, odd->cap);
    kb_buf_unref(odd);
}

static void *churn(void *arg)
{
    for (int i = 0; i < 2000; i++) {
        kb_buf_t *b = kb_buf_new((size_t)(64 << 10) << (i % 4));
        b->data[0] = (char)i;
        b->data[b->cap - 1] = (char)i;
        kb_buf_unref(b);
    }
    return NULL;
}

Test(buf, cache_is_thread_safe)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, churn, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}
