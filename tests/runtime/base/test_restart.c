/* Tests for runtime/base/restart: the restart delay both supervisors use
 * (the first, doubling, the cap, the reset after a long run, a failed
 * spawn) and how an exit is said. */
#include "runtime/base/restart.h"
#include "test.h"

static void test_delay(void) {
  /* 100 ms doubling to 10 s, forgotten after 60 s up (the engines'). */
  ASSERT_UINT_EQ(sl_restart_delay(0, 5, 100, 10000, 60000), 100);
  ASSERT_UINT_EQ(sl_restart_delay(100, 5, 100, 10000, 60000), 200);
  ASSERT_UINT_EQ(sl_restart_delay(6400, 5, 100, 10000, 60000), 10000);
  ASSERT_UINT_EQ(sl_restart_delay(10000, 59999, 100, 10000, 60000), 10000);
  ASSERT_UINT_EQ(sl_restart_delay(10000, 60000, 100, 10000, 60000), 100);
  ASSERT_UINT_EQ(sl_restart_delay_again(0, 100, 10000), 100);
  ASSERT_UINT_EQ(sl_restart_delay_again(3000, 100, 10000), 6000);
  ASSERT_UINT_EQ(sl_restart_delay_again(9000, 100, 10000), 10000);
}

static void test_describe_exit(void) {
  char b[64];
  sl_restart_describe_exit(b, sizeof(b), 0, 9);
  ASSERT_STR_EQ(b, "killed by signal 9");
  sl_restart_describe_exit(b, sizeof(b), 3, 0);
  ASSERT_STR_EQ(b, "exit status 3");
  char tiny[8];
  sl_restart_describe_exit(tiny, sizeof(tiny), 1, 0);
  ASSERT_STR_EQ(tiny, "exit st");
}

int main(void) {
  SL_RUN(test_delay);
  SL_RUN(test_describe_exit);
  return SL_TEST_EXIT();
}
