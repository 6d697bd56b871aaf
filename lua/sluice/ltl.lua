-- sluice.ltl: LTLf formulas, offline evaluation and online monitors
-- (analyzers/ltl.h) through the FFI.
--
--   local f, err = ltl.compile("G (req -> F ack)")   -- err: "column 9: ..."
--   ltl.compile(src, { max_states = 1000, max_work = 1e6 })  -- limits
--   local ev = f:event{ "req" }                       -- bitset of names
--   local m = f:monitor()
--   m:step(ev)            --> "open" | "satisfied" | "violated"
--   m:final()             --> "satisfied" | "violated" if the trace ended now
--   f:eval{ ev1, ev2 }    --> holds, first_violation (1-based) or nil
--
-- An event is a number (bit i = proposition i, see f:props()), an array of
-- proposition names, or a set { name = true }.  Compiled formulas carry
-- ffi.gc with sl_ltl_free; monitors are Lua-owned structs that keep their
-- formula alive.  Expected failures return nil, err; misuse raises
-- error(msg, 2).
local ffi = require "ffi"
local base = require "sluice.base"
local C = base.C

ffi.cdef [[
typedef enum { SL_LTL_OPEN = 0, SL_LTL_SATISFIED = 1, SL_LTL_VIOLATED = 2 } sl_ltl_verdict_t;
typedef struct { size_t column; const char *msg; } sl_ltl_error_t;
typedef struct sl_ltl_s sl_ltl_t;
typedef struct { size_t max_states; uint64_t max_work; } sl_ltl_compile_opts_t;
typedef struct { int holds; size_t first_violation; } sl_ltl_result_t;
typedef struct { const sl_ltl_t *f; uint32_t state; uint64_t steps; } sl_ltl_monitor_t;
int sl_ltl_parse(const char *src, size_t len, sl_ltl_t **out, sl_ltl_error_t *err);
void sl_ltl_free(sl_ltl_t *f);
int sl_ltl_print(const sl_ltl_t *f, char *buf, size_t cap, size_t *len);
size_t sl_ltl_prop_count(const sl_ltl_t *f);
const char *sl_ltl_prop_name(const sl_ltl_t *f, size_t i);
int sl_ltl_prop_index(const sl_ltl_t *f, const char *name, size_t len);
int sl_ltl_compile_opts(sl_ltl_t *f, const sl_ltl_compile_opts_t *opts, sl_ltl_error_t *err);
uint64_t sl_ltl_compile_work(const sl_ltl_t *f);
size_t sl_ltl_state_count(const sl_ltl_t *f);
size_t sl_ltl_eval_workspace_size(const sl_ltl_t *f);
int sl_ltl_eval(const sl_ltl_t *f, const uint64_t *trace, size_t n, void *ws, size_t ws_size,
                sl_ltl_result_t *out);
int sl_ltl_monitor_init(sl_ltl_monitor_t *m, const sl_ltl_t *f);
void sl_ltl_monitor_reset(sl_ltl_monitor_t *m);
sl_ltl_verdict_t sl_ltl_monitor_step(sl_ltl_monitor_t *m, uint64_t event);
sl_ltl_verdict_t sl_ltl_monitor_verdict(const sl_ltl_monitor_t *m);
sl_ltl_verdict_t sl_ltl_monitor_final(const sl_ltl_monitor_t *m);
]]

local sl_ltl_parse = C.sl_ltl_parse
local sl_ltl_free = C.sl_ltl_free
local sl_ltl_print = C.sl_ltl_print
local sl_ltl_prop_count = C.sl_ltl_prop_count
local sl_ltl_prop_name = C.sl_ltl_prop_name
local sl_ltl_compile_opts = C.sl_ltl_compile_opts
local sl_ltl_compile_work = C.sl_ltl_compile_work
local sl_ltl_state_count = C.sl_ltl_state_count
local sl_ltl_eval_workspace_size = C.sl_ltl_eval_workspace_size
local sl_ltl_eval = C.sl_ltl_eval
local sl_ltl_monitor_init = C.sl_ltl_monitor_init
local sl_ltl_monitor_reset = C.sl_ltl_monitor_reset
local sl_ltl_monitor_step = C.sl_ltl_monitor_step
local sl_ltl_monitor_verdict = C.sl_ltl_monitor_verdict
local sl_ltl_monitor_final = C.sl_ltl_monitor_final
local strerror = base.strerror
local ffi_string, ffi_new, ffi_gc, tonumber, type, pairs = ffi.string, ffi.new, ffi.gc, tonumber, type, pairs
local bit = require "bit"
local SIZE_MAX = ffi.cast("size_t", -1)

local _M = {
  MAX_PROPS = 64,                 -- mirrors SL_LTL_MAX_PROPS
  MAX_MONITOR_PROPS = 16,         -- mirrors SL_LTL_MAX_MONITOR_PROPS
  DEFAULT_MAX_STATES = 65536,     -- mirrors SL_LTL_DEFAULT_MAX_STATES
  DEFAULT_MAX_WORK = 16777216,    -- mirrors SL_LTL_DEFAULT_MAX_WORK (2^24)
}

-- Verdict names, indexed by sl_ltl_verdict_t.
local VERDICT = { [0] = "open", [1] = "satisfied", [2] = "violated" }
_M.VERDICT = VERDICT

local out_box = ffi_new("sl_ltl_t *[1]")
local err_box = ffi_new("sl_ltl_error_t")
local len_box = ffi_new("size_t[1]")
local result = ffi_new("sl_ltl_result_t")
local opts_box = ffi_new("sl_ltl_compile_opts_t")

local formula_mt = {}
formula_mt.__index = formula_mt
local monitor_mt = {}
monitor_mt.__index = monitor_mt

-- A limit from ltl.compile's options: nil for the default (0 in C), or a
-- positive integer.
local function limit(opts, key)
  local v = opts[key]
  if v == nil then return 0 end
  if type(v) ~= "number" or v < 1 or v ~= math.floor(v) then
    error(("ltl.compile: %s must be a positive integer"):format(key), 3)
  end
  return v
end

-- Parses and compiles src.  opts (optional) is a table with max_states
-- (automaton states, default 65536) and max_work (compile work units,
-- default 2^24, see sl_ltl_compile_opts_t), or a number, taken as
-- max_states.  Returns a formula object, or nil and "column N: message" for
-- bad text, or the limit that refused it, e.g. "compile work budget
-- exceeded (max_work = 1000)".
function _M.compile(src, opts)
  if type(src) ~= "string" then
    error("ltl.compile: formula must be a string", 2)
  end
  if type(opts) == "number" then opts = { max_states = opts } end
  if opts ~= nil and type(opts) ~= "table" then
    error("ltl.compile: options must be a table", 2)
  end
  opts_box.max_states = opts and limit(opts, "max_states") or 0
  opts_box.max_work = opts and limit(opts, "max_work") or 0
  local rc = sl_ltl_parse(src, #src, out_box, err_box)
  if rc ~= 0 then
    if err_box.msg ~= nil then
      return nil, ("column %d: %s"):format(tonumber(err_box.column), ffi_string(err_box.msg))
    end
    return nil, strerror(rc)
  end
  local f = ffi_gc(out_box[0], sl_ltl_free)
  rc = sl_ltl_compile_opts(f, opts_box, err_box)
  if rc ~= 0 then
    if err_box.msg == nil then return nil, strerror(rc) end
    local msg = ffi_string(err_box.msg)
    -- Name the budget's value too: it may have come from a default.
    if msg:find("(max_work)", 1, true) then
      local w = opts_box.max_work ~= 0 and opts_box.max_work or _M.DEFAULT_MAX_WORK
      msg = msg:gsub("%(max_work%)", ("(max_work = %d)"):format(tonumber(w)))
    elseif msg:find("max_states", 1, true) then
      local n = opts_box.max_states ~= 0 and opts_box.max_states or _M.DEFAULT_MAX_STATES
      msg = ("%s (%d)"):format(msg, tonumber(n))
    end
    return nil, msg
  end
  local names, index = {}, {}
  for i = 0, tonumber(sl_ltl_prop_count(f)) - 1 do
    local name = ffi_string(sl_ltl_prop_name(f, i))
    names[i + 1] = name
    index[name] = i
  end
  local wsz = tonumber(sl_ltl_eval_workspace_size(f))
  return setmetatable({
    cdata = f, names = names, index = index,
    ws = ffi_new("uint8_t[?]", wsz), ws_size = wsz,
  }, formula_mt)
end

-- The canonical text of the formula.
function formula_mt:tostring()
  sl_ltl_print(self.cdata, nil, 0, len_box)
  local n = tonumber(len_box[0]) + 1
  local buf = ffi_new("char[?]", n)
  sl_ltl_print(self.cdata, buf, n, nil)
  return ffi_string(buf)
end
formula_mt.__tostring = formula_mt.tostring

-- Proposition names in bit order (a fresh array).
function formula_mt:props()
  local t = {}
  for i, v in ipairs(self.names) do t[i] = v end
  return t
end

function formula_mt:states()
  return tonumber(sl_ltl_state_count(self.cdata))
end

-- The work units compiling this formula took (see ltl.compile's max_work).
function formula_mt:work()
  return tonumber(sl_ltl_compile_work(self.cdata))
end

-- The bitset of an event given as a number, an array of names or a set.
-- Names the formula does not mention are ignored (they cannot matter).
function formula_mt:event(ev)
  local t = type(ev)
  if t == "number" then return ev end
  if t ~= "table" then
    error("ltl: an event is a number, an array of names or a set of names", 2)
  end
  local e, index = 0, self.index
  for k, v in pairs(ev) do
    local name = type(k) == "number" and v or (v and k)
    local i = name and index[name]
    if i then e = bit.bor(e, bit.lshift(1, i)) end
  end
  -- bit ops are signed 32-bit; with at most 16 propositions e is >= 0.
  return e
end

-- Offline check of an array of events.  Returns holds (boolean) and the
-- 1-based index of the event after which violation was certain (#trace + 1
-- when only the end decided it), or nil when it holds.
function formula_mt:eval(trace)
  if type(trace) ~= "table" then
    error("ltl: eval takes an array of events", 2)
  end
  local n = #trace
  local buf = ffi_new("uint64_t[?]", n > 0 and n or 1)
  for i = 1, n do buf[i - 1] = self:event(trace[i]) end
  local rc = sl_ltl_eval(self.cdata, buf, n, self.ws, self.ws_size, result)
  if rc ~= 0 then return nil, strerror(rc) end
  if result.holds ~= 0 then return true, nil end
  local fv = result.first_violation
  return false, fv == SIZE_MAX and nil or tonumber(fv) + 1
end

-- A new monitor at the start of a trace.
function formula_mt:monitor()
  local m = ffi_new("sl_ltl_monitor_t")
  sl_ltl_monitor_init(m, self.cdata)
  return setmetatable({ m = m, f = self }, monitor_mt)
end

-- Consumes one event; returns "open", "satisfied" or "violated".
function monitor_mt:step(ev)
  if type(ev) ~= "number" then ev = self.f:event(ev) end
  return VERDICT[tonumber(sl_ltl_monitor_step(self.m, ev))]
end

function monitor_mt:verdict()
  return VERDICT[tonumber(sl_ltl_monitor_verdict(self.m))]
end

-- The verdict if the trace ended now: "satisfied" or "violated".
function monitor_mt:final()
  return VERDICT[tonumber(sl_ltl_monitor_final(self.m))]
end

function monitor_mt:reset()
  sl_ltl_monitor_reset(self.m)
end

function monitor_mt:steps()
  return tonumber(self.m.steps)
end

return _M
