/* restart.c: restart delays and exit descriptions (see restart.h). */
#include "runtime/base/restart.h"

#include <stdio.h>

uint64_t sl_restart_delay(uint64_t last_ms, uint64_t up_ms, uint64_t base_ms, uint64_t max_ms, uint64_t reset_ms) {
  if (last_ms == 0 || up_ms >= reset_ms) return base_ms;
  return sl_restart_delay_again(last_ms, base_ms, max_ms);
}

uint64_t sl_restart_delay_again(uint64_t last_ms, uint64_t base_ms, uint64_t max_ms) {
  uint64_t d = last_ms * 2 > max_ms ? max_ms : last_ms * 2;
  return d < base_ms ? base_ms : d;
}

void sl_restart_describe_exit(char *out, size_t cap, int64_t status, int sig) {
  if (sig)
    snprintf(out, cap, "killed by signal %d", sig);
  else
    snprintf(out, cap, "exit status %lld", (long long)status);
}
