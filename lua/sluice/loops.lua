-- sluice.loops: repetition and loop detection on token streams
-- (analyzers/loops.h) through the FFI.
--
--   local d = assert(loops.new{ window = 256, max_period = 64 })
--   local state, period, start, repeats, max_dist, length = d:push(tok)
--   -- state: "none" | "new" | "active" | "ended"; the other values describe
--   -- the loop (start is the 1-based position of its first token in the
--   -- stream) and are nil for "none"
--   d:check{ ... }   -- the batch form over an array, same returns
--   d:count(), d:reset()
--
-- Options (all optional, defaults from sl_loops_config_default): window,
-- min_period, max_period, min_repeats, min_length, max_dist_ratio.  A
-- configuration the detector cannot honour returns nil, err.  Detectors
-- carry ffi.gc with sl_loops_free.  Misuse raises error(msg, 2).
local ffi = require "ffi"
local base = require "sluice.base"
local C = base.C

ffi.cdef [[
typedef struct {
  uint32_t window;
  uint32_t min_period;
  uint32_t max_period;
  uint32_t min_repeats;
  uint32_t min_length;
  double max_dist_ratio;
} sl_loops_config_t;
typedef struct {
  int state;
  uint32_t period;
  uint64_t start;
  uint64_t length;
  uint32_t repeats;
  uint32_t max_dist;
} sl_loop_t;
typedef struct sl_loops_s sl_loops_t;
void sl_loops_config_default(sl_loops_config_t *cfg);
size_t sl_loops_size(const sl_loops_config_t *cfg);
int sl_loops_new(const sl_loops_config_t *cfg, sl_loops_t **out);
void sl_loops_free(sl_loops_t *lp);
int sl_loops_push(sl_loops_t *lp, uint32_t tok, sl_loop_t *out);
int sl_loops_check(sl_loops_t *lp, const uint32_t *tokens, size_t n, sl_loop_t *out);
void sl_loops_reset(sl_loops_t *lp);
uint64_t sl_loops_count(const sl_loops_t *lp);
]]

local sl_loops_config_default = C.sl_loops_config_default
local sl_loops_size = C.sl_loops_size
local sl_loops_new = C.sl_loops_new
local sl_loops_free = C.sl_loops_free
local sl_loops_push = C.sl_loops_push
local sl_loops_check = C.sl_loops_check
local sl_loops_reset = C.sl_loops_reset
local sl_loops_count = C.sl_loops_count
local strerror = base.strerror
local ffi_new, ffi_gc, tonumber, type, error, pairs = ffi.new, ffi.gc, tonumber, type, error, pairs

local _M = {}

-- State names, indexed by SL_LOOPS_*.
local STATE = { [0] = "none", [1] = "new", [2] = "active", [3] = "ended" }
_M.STATE = STATE

local OPTIONS = {
  window = true, min_period = true, max_period = true, min_repeats = true,
  min_length = true, max_dist_ratio = true,
}

local rep = ffi_new("sl_loop_t")
local cfg = ffi_new("sl_loops_config_t")
local box = ffi_new("sl_loops_t *[1]")
local buf, buf_cap = ffi_new("uint32_t[?]", 1024), 1024

local function report()
  local st = rep.state
  if st == 0 then
    return "none"
  end
  return STATE[st], rep.period, tonumber(rep.start) + 1, rep.repeats, rep.max_dist,
    tonumber(rep.length)
end

local detector_mt = {}
detector_mt.__index = detector_mt

-- Appends one token id; returns the state and, unless "none", the loop.
function detector_mt:push(tok)
  sl_loops_push(self.d, tok, rep)
  return report()
end

-- Whether the array of token ids ends in a loop (positions from its start).
function detector_mt:check(tokens)
  if type(tokens) ~= "table" then
    error("check: expected an array of token ids", 2)
  end
  local n = #tokens
  if n > buf_cap then
    while buf_cap < n do
      buf_cap = buf_cap * 2
    end
    buf = ffi_new("uint32_t[?]", buf_cap)
  end
  for i = 1, n do
    buf[i - 1] = tokens[i]
  end
  sl_loops_check(self.d, buf, n, rep)
  return report()
end

-- Tokens pushed since creation or the last reset.
function detector_mt:count()
  return tonumber(sl_loops_count(self.d))
end

-- Forgets the stream, keeping the settings.
function detector_mt:reset()
  sl_loops_reset(self.d)
end

-- The default settings as a table.
function _M.defaults()
  sl_loops_config_default(cfg)
  local t = {}
  for k in pairs(OPTIONS) do
    t[k] = tonumber(cfg[k])
  end
  return t
end

-- A detector; opts may override any default.
function _M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("new: options must be a table", 2)
  end
  sl_loops_config_default(cfg)
  for k, v in pairs(opts or {}) do
    if not OPTIONS[k] then
      error("new: unknown option '" .. tostring(k) .. "'", 2)
    end
    if type(v) ~= "number" or v < 0 then
      error("new: option '" .. k .. "' must be a non-negative number", 2)
    end
    cfg[k] = v
  end
  if sl_loops_size(cfg) == 0 then
    return nil, "invalid loop detector settings (every period p needs repeats(p) * p + 2 <= window)"
  end
  local rc = sl_loops_new(cfg, box)
  if rc ~= 0 then
    return nil, strerror(rc)
  end
  return setmetatable({ d = ffi_gc(box[0], sl_loops_free) }, detector_mt)
end

return _M
