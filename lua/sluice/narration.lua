-- sluice.narration: the narration policy's side of the FFI.
--
-- The runtime queues key events in C (runtime/base/narrate.h) and, once per
-- loop iteration, runs the current generation's narration policy over the
-- whole batch: run_batch(policy, nar) reads the events of narrator nar
-- (the gateway's; C passes it as a light userdata) through
-- sl_ffi_narrate_batch and hands each one to policy.narrate(ev), which
-- returns a sentence (or nil/false to say nothing).  The sentence goes back
-- to C with sl_ffi_narrate_emit, which redacts secrets and logs it beside
-- the event's fields.  No C function here calls back into Lua.
local ffi = require "ffi"
local base = require "sluice.base"

local C = base.C
local type, tostring, format = type, tostring, string.format

ffi.cdef [[
typedef struct {
  int32_t kind;
  int32_t attempt;
  uint64_t generation;
  double ms;
  int64_t tokens;
  char request_id[72];
  char endpoint[64];
  char model[64];
  char text[256];
} sl_ffi_narration_event_t;
typedef struct sl_narrator_s sl_narrator_t;
const sl_ffi_narration_event_t *sl_ffi_narrate_batch(const sl_narrator_t *nar, int32_t *n);
int sl_ffi_narrate_emit(sl_narrator_t *nar, int32_t i, const char *sentence, size_t len);
]]

local _M = {
  -- Mirrors the SL_NAR_* kinds in runtime/base/narrate.h.
  PLACEMENT = 1, RELOAD_OK = 2, RELOAD_FAILED = 3, READY = 4, NOT_READY = 5,
  COOLDOWN = 6, PAUSE = 7, CANCEL = 8, STREAM_END = 9, GUARD = 10, LIMIT = 11, QUEUE = 12,
  SHARED = 13, ENGINE = 14,
}

local nbox = ffi.new("int32_t[1]")
local narrator_ptr = ffi.typeof("sl_narrator_t *")

-- Returns true, or nil and a message naming what a narration module lacks.
function _M.validate(mod)
  if type(mod) ~= "table" then
    return nil, "a narration module must return a table, got " .. type(mod)
  end
  local missing = {}
  if type(mod.name) ~= "string" then missing[#missing + 1] = "name (string)" end
  if type(mod.version) ~= "string" then missing[#missing + 1] = "version (string)" end
  if type(mod.schema) ~= "table" then missing[#missing + 1] = "schema (table)" end
  if type(mod.narrate) ~= "function" then missing[#missing + 1] = "narrate (function)" end
  if #missing > 0 then
    return nil, "narration module is missing " .. table.concat(missing, ", ")
  end
  return true
end

-- Copies a char[] field of an event into a Lua string ("" when empty).
function _M.str(field)
  return ffi.string(field)
end

-- Narrates the batch narrator p (a light userdata) is narrating with
-- mod.narrate; errors propagate to the caller (the C side then logs the
-- plain rendering of the batch).
function _M.run_batch(mod, p)
  local nar = ffi.cast(narrator_ptr, p)
  local events = C.sl_ffi_narrate_batch(nar, nbox)
  local n = nbox[0]
  local narrate = mod.narrate
  for i = 0, n - 1 do
    local s = narrate(events[i])
    if s then
      s = tostring(s)
      C.sl_ffi_narrate_emit(nar, i, s, #s)
    else
      C.sl_ffi_narrate_emit(nar, i, "", 0)
    end
  end
  return n
end

-- The narration phase's wrapper, for the loader (sluice.phases): checks mod
-- as a narration module and returns the function the generation calls
-- with the narrator as a light userdata; it narrates the batch (run_batch)
-- and answers the number of events.  Raises "path: message" when the
-- module is wrong.
function _M.bind(mod, entry, path)
  local valid, why = _M.validate(mod)
  if not valid then error(path .. ": " .. why, 0) end
  local run = _M.run_batch
  return function(nar) return run(mod, nar) end
end

-- For `sluice repl` and specs: a standalone event (cdata) from a table.
function _M.event(t)
  local ev = ffi.new("sl_ffi_narration_event_t")
  ev.kind = t.kind or 0
  ev.attempt = t.attempt or 0
  ev.generation = t.generation or 0
  ev.ms = t.ms or 0
  ev.tokens = t.tokens or 0
  for _, f in ipairs({ "request_id", "endpoint", "model", "text" }) do
    local v = t[f] or ""
    ffi.copy(ev[f], v, math.min(#v, ffi.sizeof(ev[f]) - 1))
  end
  return ev
end

_M.format = format
return _M
