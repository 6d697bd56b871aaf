-- sluice.dynamics: Lyapunov exponent, correlation dimension and classification
-- of a numeric series (analyzers/dynamics.h) through the FFI.
--
-- A series is a Lua array of numbers, or a `double *` cdata with its length.
-- The workspace is a Lua-owned buffer, grown once to the largest series seen
-- and reused.  Expected failures (series too short, non-finite samples)
-- return nil, err; misuse (wrong argument types) raises error(msg, 2).
local ffi = require "ffi"
local base = require "sluice.base"
local C = base.C

ffi.cdef [[
typedef enum {
  SL_DYN_FIXED_POINT = 0, SL_DYN_PERIODIC = 1, SL_DYN_CHAOTIC = 2,
  SL_DYN_NOISE = 3, SL_DYN_TREND = 4
} sl_dyn_class_t;
typedef struct {
  double dt; unsigned m; unsigned tau; unsigned theiler; unsigned max_steps; int search;
} sl_dyn_params_t;
typedef struct {
  double lambda; double lambda_step; double fit_r2; double growth; double first_step;
  unsigned fit_lo; unsigned fit_hi; unsigned steps; unsigned pairs;
  unsigned m, tau, theiler;
} sl_lyap_t;
typedef struct {
  double dim; double fit_r2; double r_lo, r_hi; uint64_t pairs; unsigned m, tau, theiler;
} sl_corrdim_t;
typedef struct {
  sl_dyn_class_t cls; double trend_r2; double settle; double fnn; double recurrence;
  sl_lyap_t lyap; sl_corrdim_t corr;
} sl_dyn_report_t;
size_t sl_dyn_workspace_size(size_t n);
int sl_lyap_estimate(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                     size_t ws_size, double *curve, size_t curve_cap, sl_lyap_t *out);
int sl_corrdim_estimate(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                        size_t ws_size, sl_corrdim_t *out);
int sl_dyn_classify(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                    size_t ws_size, sl_dyn_report_t *out);
const char *sl_dyn_class_name(sl_dyn_class_t c);
]]

local sl_dyn_workspace_size = C.sl_dyn_workspace_size
local sl_lyap_estimate = C.sl_lyap_estimate
local sl_corrdim_estimate = C.sl_corrdim_estimate
local sl_dyn_classify = C.sl_dyn_classify
local sl_dyn_class_name = C.sl_dyn_class_name
local strerror = base.strerror
local ffi_string, ffi_new, tonumber, type = ffi.string, ffi.new, tonumber, type

local _M = {
  MIN_SAMPLES = 64, -- mirrors SL_DYN_MIN_SAMPLES
  MAX_DIM = 10,     -- mirrors SL_DYN_MAX_DIM
  SEARCH_KDTREE = 0,
  SEARCH_BRUTE = 1,
}

-- Scratch made once and grown: the workspace and the series copy.
local ws, ws_size = nil, 0
local xbuf, xcap = nil, 0
local params = ffi_new("sl_dyn_params_t")
local lyap_out = ffi_new("sl_lyap_t")
local corr_out = ffi_new("sl_corrdim_t")
local report_out = ffi_new("sl_dyn_report_t")

local function series(x, n, fname)
  if type(x) == "table" then
    n = #x
    if n > xcap then
      xbuf, xcap = ffi_new("double[?]", n), n
    end
    for i = 1, n do
      local v = x[i]
      if type(v) ~= "number" then
        error(fname .. ": sample " .. i .. " is not a number", 3)
      end
      xbuf[i - 1] = v
    end
    return xbuf, n
  elseif type(x) == "cdata" then
    if type(n) ~= "number" then
      error(fname .. ": a cdata series needs its length", 3)
    end
    return x, n
  end
  error(fname .. ": series must be an array of numbers or a double* cdata", 3)
end

local function workspace(n)
  local need = tonumber(sl_dyn_workspace_size(n))
  if need > ws_size then
    ws, ws_size = ffi_new("uint8_t[?]", need), need
  end
  return ws, ws_size
end

local function set_params(opts, fname)
  if opts ~= nil and type(opts) ~= "table" then
    error(fname .. ": opts must be a table", 3)
  end
  opts = opts or {}
  params.dt = opts.dt or 1
  params.m = opts.m or 0
  params.tau = opts.tau or 0
  params.theiler = opts.theiler or 0
  params.max_steps = opts.max_steps or 0
  params.search = opts.search or 0
end

local function lyap_table(l)
  return {
    lambda = l.lambda, lambda_step = l.lambda_step, fit_r2 = l.fit_r2,
    growth = l.growth, first_step = l.first_step,
    fit_lo = l.fit_lo, fit_hi = l.fit_hi, steps = l.steps, pairs = l.pairs,
    m = l.m, tau = l.tau, theiler = l.theiler,
  }
end

local function corr_table(c)
  return {
    dim = c.dim, fit_r2 = c.fit_r2, r_lo = c.r_lo, r_hi = c.r_hi,
    pairs = tonumber(c.pairs), m = c.m, tau = c.tau, theiler = c.theiler,
  }
end

local function failure(rc)
  return nil, strerror(rc)
end

-- Largest Lyapunov exponent (Rosenstein).  opts: dt, m, tau, theiler,
-- max_steps, search, curve (true to also return the divergence curve).
-- Returns a table of the estimate and its evidence, or nil, err.
function _M.lyapunov(x, n, opts)
  if type(n) == "table" then n, opts = nil, n end
  local buf, len = series(x, n, "lyapunov")
  set_params(opts, "lyapunov")
  local w, wsz = workspace(len)
  local curve, cap = nil, 0
  if opts and opts.curve then
    cap = len + 1
    curve = ffi_new("double[?]", cap)
  end
  local rc = sl_lyap_estimate(buf, len, params, w, wsz, curve, cap, lyap_out)
  if rc ~= 0 then return failure(rc) end
  local t = lyap_table(lyap_out)
  if curve then
    local c = {}
    for k = 0, t.steps - 1 do c[k + 1] = curve[k] end
    t.curve = c
  end
  return t
end

-- Correlation dimension (Grassberger-Procaccia); opts as for lyapunov.
function _M.corrdim(x, n, opts)
  if type(n) == "table" then n, opts = nil, n end
  local buf, len = series(x, n, "corrdim")
  set_params(opts, "corrdim")
  local w, wsz = workspace(len)
  local rc = sl_corrdim_estimate(buf, len, params, w, wsz, corr_out)
  if rc ~= 0 then return failure(rc) end
  return corr_table(corr_out)
end

-- Classification: returns { class = "chaotic"|"periodic"|"noise"|"trend"|
-- "fixed_point", lyap = {...}, corr = {...}, trend_r2, settle, fnn,
-- recurrence }, or nil, err.
function _M.classify(x, n, opts)
  if type(n) == "table" then n, opts = nil, n end
  local buf, len = series(x, n, "classify")
  set_params(opts, "classify")
  local w, wsz = workspace(len)
  local rc = sl_dyn_classify(buf, len, params, w, wsz, report_out)
  if rc ~= 0 then return failure(rc) end
  local r = report_out
  return {
    class = ffi_string(sl_dyn_class_name(r.cls)),
    trend_r2 = r.trend_r2, settle = r.settle, fnn = r.fnn, recurrence = r.recurrence,
    lyap = lyap_table(r.lyap), corr = corr_table(r.corr),
  }
end

return _M
