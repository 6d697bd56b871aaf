/* test.h: typed assertion macros for sluice's C unit tests.
 *
 * A test program defines functions `static void test_x(void)` and runs them
 * with SL_RUN(test_x) from main, then returns SL_TEST_EXIT().  A failed
 * assertion prints file:line with both values and marks the program failed;
 * the current test function returns at once.  The last line printed is
 * "N passed, M failed", which CI reads.
 */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int sl__test_failed_asserts;
static int sl__test_cur_failed;
static int sl__tests_passed;
static int sl__tests_failed;

#define SL__FAIL(...)                                        \
  do {                                                       \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);          \
    fprintf(stderr, __VA_ARGS__);                            \
    fprintf(stderr, "\n");                                   \
    sl__test_failed_asserts++;                               \
    sl__test_cur_failed = 1;                                 \
    return;                                                  \
  } while (0)

#define ASSERT(c) \
  do { if (!(c)) SL__FAIL("assertion failed: %s", #c); } while (0)
#define ASSERT_INT_OP(a, op, b)                                                   \
  do {                                                                            \
    int64_t sl__a = (int64_t)(a), sl__b = (int64_t)(b);                           \
    if (!(sl__a op sl__b))                                                        \
      SL__FAIL("%s %s %s: %" PRId64 " vs %" PRId64, #a, #op, #b, sl__a, sl__b);   \
  } while (0)
#define ASSERT_EQ(a, b) ASSERT_INT_OP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP(a, >=, b)
#define ASSERT_UINT_EQ(a, b)                                                       \
  do {                                                                             \
    uint64_t sl__a = (uint64_t)(a), sl__b = (uint64_t)(b);                         \
    if (sl__a != sl__b)                                                            \
      SL__FAIL("%s == %s: %" PRIu64 " vs %" PRIu64, #a, #b, sl__a, sl__b);         \
  } while (0)
#define ASSERT_DBL_NEAR(a, b, tol)                                                 \
  do {                                                                             \
    double sl__a = (double)(a), sl__b = (double)(b), sl__t = (double)(tol);        \
    if (!(sl__a - sl__b <= sl__t && sl__b - sl__a <= sl__t))                       \
      SL__FAIL("%s ~= %s (tol %g): %.17g vs %.17g", #a, #b, sl__t, sl__a, sl__b);  \
  } while (0)
#define ASSERT_STR_EQ(a, b)                                                        \
  do {                                                                             \
    const char *sl__a = (a), *sl__b = (b);                                         \
    if (sl__a == NULL || sl__b == NULL || strcmp(sl__a, sl__b) != 0)               \
      SL__FAIL("%s == %s: \"%s\" vs \"%s\"", #a, #b, sl__a ? sl__a : "(null)",     \
               sl__b ? sl__b : "(null)");                                          \
  } while (0)
#define ASSERT_MEM_EQ(a, alen, b, blen)                                            \
  do {                                                                             \
    size_t sl__al = (size_t)(alen), sl__bl = (size_t)(blen);                       \
    if (sl__al != sl__bl || memcmp((a), (b), sl__al) != 0)                         \
      SL__FAIL("%s == %s: \"%.*s\" vs \"%.*s\"", #a, #b, (int)sl__al,              \
               (const char *)(a), (int)sl__bl, (const char *)(b));                 \
  } while (0)
#define ASSERT_NULL(p) ASSERT((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT((p) != NULL)

#define SL_RUN(fn)                                             \
  do {                                                         \
    sl__test_cur_failed = 0;                                   \
    fn();                                                      \
    if (sl__test_cur_failed) {                                 \
      sl__tests_failed++;                                      \
      fprintf(stderr, "FAIL %s\n", #fn);                       \
    } else {                                                   \
      sl__tests_passed++;                                      \
      fprintf(stderr, "ok   %s\n", #fn);                       \
    }                                                          \
  } while (0)

#define SL_TEST_EXIT()                                                          \
  (printf("%d passed, %d failed\n", sl__tests_passed, sl__tests_failed),        \
   sl__tests_failed ? 1 : 0)

#endif
