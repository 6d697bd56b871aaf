-- sluice.dtw: dynamic time warping with lower bounds and search
-- (analyzers/dtw.h) through the FFI.
--
--   dtw.distance(a, b, { band = 10, cost = "squared", abandon_at = 5 })
--     --> distance, or math.huge when it is not below abandon_at
--   dtw.lb_kim(a, b, cost)               --> lower bound
--   local lo, up = dtw.envelope(x, band) --> two arrays
--   dtw.lb_keogh(c, lo, up, cost)        --> lower bound
--   local pos, dist, stats = dtw.search(q, s, { band = 12 })  -- pos 1-based
--   local st = dtw.stream(q, { band = 12, threshold = 3.5 })
--   st:push(x)   --> distance of the newest window, or math.huge
--   st:reset()
--
-- Series are arrays of numbers.  band defaults to unconstrained, cost to
-- "abs".  The functions copy arrays into scratch buffers made at load and
-- grown only for longer input.  Streams carry ffi.gc with
-- sl_dtw_stream_free.  Expected failures return nil, err; misuse raises
-- error(msg, 2).
local ffi = require "ffi"
local base = require "sluice.base"
local C = base.C

ffi.cdef [[
typedef struct {
  size_t pos;
  double dist;
  uint64_t windows;
  uint64_t pruned_kim;
  uint64_t pruned_keogh;
  uint64_t pruned_keogh2;
  uint64_t abandoned;
  uint64_t computed;
} sl_dtw_match_t;
typedef struct sl_dtw_stream_s sl_dtw_stream_t;
size_t sl_dtw_work_size(size_t na, size_t nb);
int sl_dtw_distance(const double *a, size_t na, const double *b, size_t nb, size_t band,
                    int cost, double abandon_at, void *work, size_t work_size, double *out);
int sl_dtw_lb_kim(const double *a, size_t na, const double *b, size_t nb, int cost,
                  double *out);
size_t sl_dtw_envelope_work_size(size_t n, size_t band);
int sl_dtw_envelope(const double *x, size_t n, size_t band, double *lower, double *upper,
                    void *work, size_t work_size);
int sl_dtw_lb_keogh(const double *c, size_t n, const double *lower, const double *upper,
                    int cost, double abandon_at, double *out);
size_t sl_dtw_search_work_size(size_t m, size_t n, size_t band);
int sl_dtw_search(const double *q, size_t m, const double *s, size_t n, size_t band, int cost,
                  void *work, size_t work_size, sl_dtw_match_t *best);
size_t sl_dtw_stream_size(size_t m, size_t band);
int sl_dtw_stream_new(const double *q, size_t m, size_t band, int cost, double threshold,
                      sl_dtw_stream_t **out);
void sl_dtw_stream_free(sl_dtw_stream_t *s);
int sl_dtw_stream_push(sl_dtw_stream_t *s, double x, double *dist);
void sl_dtw_stream_reset(sl_dtw_stream_t *s);
]]

local sl_dtw_work_size = C.sl_dtw_work_size
local sl_dtw_distance = C.sl_dtw_distance
local sl_dtw_lb_kim = C.sl_dtw_lb_kim
local sl_dtw_envelope_work_size = C.sl_dtw_envelope_work_size
local sl_dtw_envelope = C.sl_dtw_envelope
local sl_dtw_lb_keogh = C.sl_dtw_lb_keogh
local sl_dtw_search_work_size = C.sl_dtw_search_work_size
local sl_dtw_search = C.sl_dtw_search
local sl_dtw_stream_new = C.sl_dtw_stream_new
local sl_dtw_stream_free = C.sl_dtw_stream_free
local sl_dtw_stream_push = C.sl_dtw_stream_push
local sl_dtw_stream_reset = C.sl_dtw_stream_reset
local strerror = base.strerror
local ffi_new, ffi_gc, tonumber, type, error = ffi.new, ffi.gc, tonumber, type, error
local huge = math.huge

local _M = {
  ABS = 0,     -- mirrors SL_DTW_ABS
  SQUARED = 1, -- mirrors SL_DTW_SQUARED
}
local COSTS = { abs = 0, squared = 1 }
local NO_BAND = ffi.cast("size_t", -1)

local out = ffi_new("double[1]")
local match = ffi_new("sl_dtw_match_t")
local stream_box = ffi_new("sl_dtw_stream_t *[1]")

-- Scratch: four series buffers and one work area, grown on demand.
local bufs, buf_cap = {}, 0
local work, work_size = nil, 0

local function ensure_bufs(n)
  if n <= buf_cap and buf_cap > 0 then
    return
  end
  local want = buf_cap > 0 and buf_cap or 1024
  while want < n do
    want = want * 2
  end
  for i = 1, 4 do
    bufs[i] = ffi_new("double[?]", want)
  end
  buf_cap = want
end
ensure_bufs(1024)

local function ensure_work(bytes)
  if work ~= nil and bytes <= work_size then
    return work
  end
  local want = work_size > 0 and work_size or 65536
  while want < bytes do
    want = want * 2
  end
  work = ffi_new("double[?]", (want + 7) / 8) -- doubles: 8-byte aligned
  work_size = want
  return work
end

local function fill(buf, t)
  for i = 1, #t do
    buf[i - 1] = t[i]
  end
end

local function errstr(rc)
  return strerror(rc)
end

local function check_series(x, fname, what)
  if type(x) ~= "table" then
    error(fname .. ": expected an array of numbers for " .. what, 3)
  end
end

local function cost_of(c, fname)
  local v = COSTS[c or "abs"]
  if v == nil then
    error(fname .. ": cost must be \"abs\" or \"squared\"", 3)
  end
  return v
end

local function band_of(b, fname)
  if b == nil then
    return NO_BAND
  end
  if type(b) ~= "number" or b < 0 then
    error(fname .. ": band must be a non-negative number", 3)
  end
  return b
end

local function opts_of(opts, fname)
  if opts == nil then
    return {}
  end
  if type(opts) ~= "table" then
    error(fname .. ": options must be a table", 3)
  end
  return opts
end

-- DTW distance of two series; opts: band, cost, abandon_at.
function _M.distance(a, b, opts)
  check_series(a, "distance", "a")
  check_series(b, "distance", "b")
  opts = opts_of(opts, "distance")
  local cost, band = cost_of(opts.cost, "distance"), band_of(opts.band, "distance")
  local na, nb = #a, #b
  ensure_bufs(na > nb and na or nb)
  fill(bufs[1], a)
  fill(bufs[2], b)
  local bytes = sl_dtw_work_size(na, nb)
  local w = ensure_work(tonumber(bytes))
  local rc = sl_dtw_distance(bufs[1], na, bufs[2], nb, band, cost, opts.abandon_at or huge, w,
    work_size, out)
  if rc ~= 0 then
    return nil, errstr(rc)
  end
  return out[0]
end

-- LB_Kim lower bound of two series.
function _M.lb_kim(a, b, cost)
  check_series(a, "lb_kim", "a")
  check_series(b, "lb_kim", "b")
  local c = cost_of(cost, "lb_kim")
  local na, nb = #a, #b
  ensure_bufs(na > nb and na or nb)
  fill(bufs[1], a)
  fill(bufs[2], b)
  sl_dtw_lb_kim(bufs[1], na, bufs[2], nb, c, out)
  return out[0]
end

-- The band envelope of a series: two new arrays, lower and upper.
function _M.envelope(x, band)
  check_series(x, "envelope", "x")
  local n = #x
  local b = band_of(band, "envelope")
  ensure_bufs(n)
  fill(bufs[1], x)
  local w = ensure_work(tonumber(sl_dtw_envelope_work_size(n, b)))
  local rc = sl_dtw_envelope(bufs[1], n, b, bufs[3], bufs[4], w, work_size)
  if rc ~= 0 then
    return nil, errstr(rc)
  end
  local lo, up = {}, {}
  for i = 1, n do
    lo[i], up[i] = bufs[3][i - 1], bufs[4][i - 1]
  end
  return lo, up
end

-- LB_Keogh of series c against an envelope (lower, upper) of the same length.
function _M.lb_keogh(c, lower, upper, cost, abandon_at)
  check_series(c, "lb_keogh", "c")
  check_series(lower, "lb_keogh", "lower")
  check_series(upper, "lb_keogh", "upper")
  local n = #c
  if #lower ~= n or #upper ~= n then
    error("lb_keogh: series and envelope differ in length", 2)
  end
  local k = cost_of(cost, "lb_keogh")
  ensure_bufs(n)
  fill(bufs[1], c)
  fill(bufs[3], lower)
  fill(bufs[4], upper)
  sl_dtw_lb_keogh(bufs[1], n, bufs[3], bufs[4], k, abandon_at or huge, out)
  return out[0]
end

-- The window of s closest to q: returns its 1-based start, its distance and
-- a table of counts (windows, pruned_kim, pruned_keogh, pruned_keogh2,
-- abandoned, computed).  nil, dist = math.huge when s is shorter than q.
function _M.search(q, s, opts)
  check_series(q, "search", "q")
  check_series(s, "search", "s")
  opts = opts_of(opts, "search")
  local m, n = #q, #s
  if m == 0 then
    error("search: the query is empty", 2)
  end
  local cost, band = cost_of(opts.cost, "search"), band_of(opts.band, "search")
  ensure_bufs(m > n and m or n)
  fill(bufs[1], q)
  fill(bufs[2], s)
  local w = ensure_work(tonumber(sl_dtw_search_work_size(m, n, band)))
  local rc = sl_dtw_search(bufs[1], m, bufs[2], n, band, cost, w, work_size, match)
  if rc ~= 0 then
    return nil, errstr(rc)
  end
  local stats = {
    windows = tonumber(match.windows),
    pruned_kim = tonumber(match.pruned_kim),
    pruned_keogh = tonumber(match.pruned_keogh),
    pruned_keogh2 = tonumber(match.pruned_keogh2),
    abandoned = tonumber(match.abandoned),
    computed = tonumber(match.computed),
  }
  if match.dist == huge then
    return nil, huge, stats
  end
  return tonumber(match.pos) + 1, match.dist, stats
end

local stream_mt = {}
stream_mt.__index = stream_mt

-- Appends a sample; returns the distance of the newest window if it is
-- below the threshold, else math.huge.
function stream_mt:push(x)
  sl_dtw_stream_push(self.s, x, out)
  return out[0]
end

-- Forgets the samples, keeping query and settings.
function stream_mt:reset()
  sl_dtw_stream_reset(self.s)
end

-- A stream matching query q against the newest #q samples; opts: band,
-- cost, threshold (default math.huge: every distance is reported).
function _M.stream(q, opts)
  check_series(q, "stream", "q")
  opts = opts_of(opts, "stream")
  local m = #q
  if m == 0 then
    error("stream: the query is empty", 2)
  end
  local cost, band = cost_of(opts.cost, "stream"), band_of(opts.band, "stream")
  ensure_bufs(m)
  fill(bufs[1], q)
  local rc = sl_dtw_stream_new(bufs[1], m, band, cost, opts.threshold or huge, stream_box)
  if rc ~= 0 then
    return nil, errstr(rc)
  end
  return setmetatable({ s = ffi_gc(stream_box[0], sl_dtw_stream_free) }, stream_mt)
end

return _M
