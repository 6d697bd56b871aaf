/* repl.h: `sluice repl`, a LuaJIT prompt with the sluice library loaded.
 *
 * The prompt runs in a state made by sl_lua_new_state (the sluice modules
 * and shipped policies on package.path; the FFI finds the library's symbols
 * in the sluice binary itself, which exports them), with the globals
 * inspect, placement and sluice.<module> (lua/sluice/repl.lua).  It reads
 * lines from stdin; a chunk may span lines (an incomplete chunk waits for
 * more), an expression or `=expr` prints its values with sluice.inspect,
 * and an error is printed with its traceback on stderr without ending the
 * session.  Prompts are written only when stdin is a terminal, so a script
 * can be piped in; no line editing library is used.  The JIT is on, as for
 * policies: Ctrl-C interrupts a running chunk at its next call or return
 * (not inside a compiled loop), a second one ends the process.
 */
#ifndef SL_REPL_H
#define SL_REPL_H

/* The `sluice repl` command (argv[0] is "repl").  Returns the exit status:
 * 0, 1 when stdin was not a terminal and some chunk failed, 2 on misuse or
 * when the Lua state cannot be made. */
int sl_repl_main(int argc, char **argv);

#endif
