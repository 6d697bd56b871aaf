-- sluice.repl: the read-eval-print core shared by `sluice repl` and the
-- Lua sessions of `sluice attach` (runtime/ops/repl.c, runtime/ops/attach.c).  C
-- gathers lines into a chunk and calls eval after each line; this module
-- decides whether the chunk is complete, runs it and formats the answer.
--
--   repl.eval(src, chunkname)     --> "ok", text | "more" | "error", text
--   repl.compile(src, chunkname)  --> fn | nil, err, incomplete
--   repl.capture_print()          -- print() output goes into eval's text
--   repl.install_globals(env)     -- inspect, placement, sluice.<module>
--
-- A chunk is first compiled as an expression ("return " .. src), so `1 + 2`
-- and `streams()` show their values; if that fails, as a block of
-- statements.  `=expr` is the expression form only.  A chunk is incomplete
-- (eval answers "more") when either form's syntax error is at '<eof>': the
-- text so far can still become a valid chunk.  Results are printed with
-- sluice.inspect, several separated by tabs; errors come with a traceback
-- that stops at the chunk (the REPL's own frames are cut).
local inspect = require "sluice.inspect"

local type, tostring, select, xpcall, loadstring = type, tostring, select, xpcall, loadstring
local concat, traceback = table.concat, debug.traceback
local find, sub = string.find, string.sub

local _M = {}

local function at_eof(err)
  return type(err) == "string" and sub(err, -7) == "'<eof>'"
end

-- The expression form hands its values to a function instead of returning
-- the expression directly: `return f()` would be a tail call, and an error
-- raised in f would lose the chunk's line ("stdin:1:").  Any expression list
-- is also a valid argument list, so both forms compile alike; the newline
-- ends a trailing comment.
local function expression(src, chunkname)
  local fn, err = loadstring("return " .. src, chunkname)
  if not fn then return nil, err end
  return loadstring("local function sluice_repl_values(...) return ... end; return sluice_repl_values(" ..
    src .. "\n)", chunkname)
end

-- Compiles src (chunkname as for loadstring, e.g. "=stdin").  Returns the
-- function, or nil, the syntax error, and
-- true when the chunk is only incomplete.
function _M.compile(src, chunkname)
  if type(src) ~= "string" then error("repl.compile: source must be a string", 2) end
  if sub(src, 1, 1) == "=" then
    local fn, err = expression(sub(src, 2), chunkname)
    if fn then return fn end
    return nil, err, at_eof(err)
  end
  local fn, experr = expression(src, chunkname)
  if fn then return fn end
  local err
  fn, err = loadstring(src, chunkname)
  if fn then return fn end
  return nil, err, at_eof(err) or at_eof(experr)
end

-- An error value as text: strings as they are, objects with __tostring
-- through it, anything else inspected.
local function error_text(e)
  if type(e) == "string" then return e end
  local mt = getmetatable(e)
  if type(mt) == "table" and mt.__tostring then return tostring(e) end
  return "(error object is a " .. type(e) .. " value) " .. inspect(e)
end

-- The traceback stops at the chunk's own frames: everything from the
-- xpcall below it on belongs to the REPL.
local function handler(e)
  local tb = traceback(error_text(e), 2)
  local cut = find(tb, "\n%s*%[C%]: in function 'xpcall'")
  if cut then tb = sub(tb, 1, cut - 1) end
  return tb
end

local captured = nil -- print() output of the chunk running now, when captured

-- Makes print() append to the text eval returns instead of writing to
-- stdout (for attach sessions, whose stdout is the daemon's).
function _M.capture_print()
  captured = {}
  _G.print = function(...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    captured[#captured + 1] = concat(parts, "\t") .. "\n"
  end
end

local function printed()
  if captured == nil or #captured == 0 then return "" end
  local s = concat(captured)
  captured = {}
  return s
end

local function finish(guard, ok, ...)
  if guard then guard(false) end
  local out = printed()
  if not ok then
    return "error", out .. (...)
  end
  local text = inspect.values(select("#", ...), ...)
  if text == "" and sub(out, -1) == "\n" then out = sub(out, 1, -2) end
  return "ok", out .. text
end

-- Compiles and runs src.  Returns "more" when the chunk is incomplete,
-- "ok" and the printed output followed by the results, or "error" and the
-- message (a syntax error, or a runtime error with its traceback).
-- guard, when given, is called with true just before the chunk runs and
-- with false right after (attach sessions tighten their memory cap around
-- the chunk itself, so compiling the next one always has room).
function _M.eval(src, chunkname, guard)
  if captured then captured = {} end
  local fn, err, incomplete = _M.compile(src, chunkname or "=stdin")
  if not fn then
    if incomplete then return "more" end
    return "error", err
  end
  if guard then guard(true) end
  return finish(guard, xpcall(fn, handler))
end

-- Globals for an interactive session (env defaults to _G): inspect,
-- placement, and sluice, whose fields load the sluice modules on first use
-- (sluice.editdist, sluice.dict, ...).
function _M.install_globals(env)
  env = env or _G
  env.inspect = inspect
  env.placement = require "sluice.placement"
  env.sluice = setmetatable({}, {
    __index = function(t, k)
      if type(k) ~= "string" then return nil end
      local m = require("sluice." .. k)
      rawset(t, k, m)
      return m
    end,
  })
  return env
end

return _M
