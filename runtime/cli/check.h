/* check.h: `sluice check`, a policy tried as the daemon would before it
 * serves (runtime/lua/policy_check.h does the trying). */
#ifndef SL_CLI_CHECK_H
#define SL_CLI_CHECK_H

/* `sluice check POLICY.lua | --config FILE` (argv[0] is "check"): builds
 * the policies as the daemon would and runs the sample checks, printing
 * the samples' outcomes on stdout.  Returns the exit status: 0 ok, 1 the
 * policy (or config) is refused, 2 usage. */
int sl_policy_check_main(int argc, char **argv);

#endif
