/* replay.h: `sluice replay`, a recorded transcript (stream/transcript.h)
 * run again through a pipeline and the guards, offline. */
#ifndef SL_CLI_REPLAY_H
#define SL_CLI_REPLAY_H

/* `sluice replay FILE [--pipeline FILE|none] [--guards FILE] [--timing
 * fast|original]` (argv[0] is "replay").  Prints every action and verdict
 * on stdout.  Returns the exit status: 0 done, 1 the transcript, pipeline
 * or guards cannot be used, 2 usage, 3 the recorded pipeline and guards
 * gave other verdicts than the recording. */
int sl_replay_main(int argc, char **argv);

#endif
