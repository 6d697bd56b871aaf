-- sluice.limits: what a limit rule sees (runtime/lua/limit_ffi.h) and
-- helpers for rule authors.
--
--   limits.stats_of(p)                     -- the snapshot C hands the limit() wrapper
--                                          -- (a light userdata), as cdata
--   limits.slow_of(p)                      -- the same for slow_client()
--   limits.endpoint(s), limits.pool(s)     -- the snapshot's names as Lua strings
--   limits.ttft(s, q), limits.itl(s, q)    -- a signal by name: q = "mean" | "p50" | "p90" | "p99"
--   limits.app_limited(s)                  -- true when max_inflight < limit / 2
--   limits.clamp(v, s)                     -- v kept in [s.min, s.max]
--   limits.cut(s, last, factor)            -- the limit after an interval with drops
--   limits.validate_policy(mod)            -- true | nil, message
--   limits.configure(mod, overrides)       -- config (schema defaults + overrides) | nil, message
--   limits.run(mod, s, state, overrides)   -- limit, reason | nil, message (checked call)
--   limits.run_slow_client(mod, c, overrides) -- "keep" | "cancel", reason | nil, message
--   limits.bind(mod, entry, path, cfg)     -- for the loader (sluice.phases): the limit() and
--                                          -- slow_client() the generation calls
--   limits.new_stats(t), limits.new_slow(t) -- snapshots built from Lua tables
--
-- A limit rule is a table { name, version, schema, limit, [slow_client],
-- [configure] }.  On every interval, for each endpoint of a pool that
-- adapts, C calls limit(s, state, config): s is the interval's snapshot,
-- state a table this module keeps per endpoint (s.endpoint_id) for the
-- generation's life, config the rule's settings.  It returns the endpoint's
-- next limit and a short reason; C keeps the answer in [s.min, s.max].
-- slow_client(c, config), when the rule has it, answers "keep" or "cancel"
-- for a stream whose client holds it back.  Snapshots are valid only during
-- the call: keep numbers in state, never s or c.  See docs/limit-rules.md.
local ffi = require "ffi"
require "sluice.base" -- refuses a library of another FFI ABI
local schema = require "sluice.schema"

-- Mirrors runtime/lua/limit_ffi.h exactly (tests/lua/limits_spec.lua
-- compares the two).
local CDEF = [[
typedef struct {
  const char *endpoint;  /* "host:port" (borrowed) */
  const char *pool;      /* its pool's name (borrowed) */
  int32_t endpoint_id;   /* stable id of the endpoint (index in the registry) */
  int32_t pool_id;       /* index of its pool */
  int32_t limit;         /* the limit now (what the rule's answer replaces) */
  int32_t min, max;      /* the bounds C keeps the answer in */
  int32_t slots;         /* the configured slots (the first limit unless the pool sets one) */
  int32_t inflight;      /* streams on it now */
  int32_t max_inflight;  /* most streams on it at once during the interval */
  int32_t queued;        /* requests waiting in its pool's queue now */
  int32_t ready;         /* 1 if it passed its last health check */
  int32_t reserved;      /* 0 (alignment) */
  double interval_ms;    /* length of the interval (since the last call) */
  double now_ms;         /* a monotonic clock, in ms */
  int64_t started;       /* attempts dispatched to it during the interval */
  int64_t completed;     /* of its streams, those that ended during the interval after a first token */
  int64_t rate_limited;  /* its answers of HTTP 429 during the interval */
  int64_t unavailable;   /* its answers of HTTP 503 during the interval */
  int64_t timeouts;      /* first-token and idle timeouts during the interval */
  int64_t errors;        /* other failed attempts during the interval */
  int64_t drops;         /* rate_limited + unavailable + timeouts (C cut the limit once for them already) */
  int64_t ttft_n;        /* TTFT samples in the interval */
  double ttft_mean, ttft_p50, ttft_p90, ttft_p99; /* normalized TTFT, ms (0 when ttft_n is 0) */
  int64_t itl_n;         /* inter-token gaps in the interval (the latest SL_DYN_RING at most) */
  double itl_mean, itl_p50, itl_p90, itl_p99;     /* inter-token time, ms (0 when itl_n is 0) */
  double sketch_error;   /* the quantiles' relative error bound (SL_QS_ALPHA) */
  double ttft_min;       /* the interval's smallest normalized TTFT, exact (0 when ttft_n is 0) */
} sl_ffi_limit_stats_t;

typedef struct {
  const char *id;        /* the request id (borrowed) */
  const char *endpoint;  /* "host:port" of its engine (borrowed) */
  const char *pool;      /* its pool (borrowed) */
  const char *tenant;    /* its tenant's name, or NULL (borrowed) */
  int32_t queued;        /* requests waiting in its pool's queue now */
  int32_t priority;      /* 0 high, 1 normal, 2 low */
  double paused_ms;      /* how long its client has stayed above the high watermark */
  double age_ms;         /* since the stream was admitted */
  int64_t tokens;        /* tokens received from the engine so far */
  int64_t tokens_written;/* of those, the ones the client's kernel took */
  int64_t pinned_bytes;  /* bytes of stream buffers it holds */
} sl_ffi_slow_client_t;
]]
ffi.cdef(CDEF)

local ffi_string, ffi_cast, ffi_typeof = ffi.string, ffi.cast, ffi.typeof
local type, tostring, tonumber, pairs, ipairs, pcall, error, setmetatable =
  type, tostring, tonumber, pairs, ipairs, pcall, error, setmetatable
local concat, format, floor, huge = table.concat, string.format, math.floor, math.huge

-- An answer past these is cut to them before it reaches C (an int64 there,
-- then kept in [min, max]); a double far outside int64 would not convert.
local INT32_MIN, INT32_MAX = -2147483648, 2147483647

local _M = {
  CDEF = CDEF,
  QUANTILES = { "mean", "p50", "p90", "p99" }, -- the names limits.ttft and limits.itl take
}

local stats_ptr = ffi_typeof("const sl_ffi_limit_stats_t *")
local slow_ptr = ffi_typeof("const sl_ffi_slow_client_t *")

-- The snapshot C passes to the generation's limit() wrapper (a light
-- userdata: C cannot make cdata), as the FFI type the rule reads.
function _M.stats_of(p)
  return ffi_cast(stats_ptr, p)
end

-- The stream C passes to the slow_client() wrapper, as its FFI type.
function _M.slow_of(p)
  return ffi_cast(slow_ptr, p)
end

-- The endpoint's "host:port", or "endpoint <id>" when it has no name.
function _M.endpoint(s)
  local p = s.endpoint
  if p ~= nil then return ffi_string(p) end
  return "endpoint " .. s.endpoint_id
end

-- The pool's name, or "pool <id>" when it has none.
function _M.pool(s)
  local p = s.pool
  if p ~= nil then return ffi_string(p) end
  return "pool " .. s.pool_id
end

-- Field names by quantile name, made once: reading a signal by name makes
-- no string per call.
local TTFT_FIELD, ITL_FIELD = {}, {}
for _, q in ipairs(_M.QUANTILES) do
  TTFT_FIELD[q], ITL_FIELD[q] = "ttft_" .. q, "itl_" .. q
end

-- The interval's normalized TTFT (ms) by quantile name; raises on a name
-- that is not one of limits.QUANTILES.
function _M.ttft(s, q)
  local f = TTFT_FIELD[q]
  if f == nil then error(format('limits.ttft: "%s" is not one of mean, p50, p90, p99', tostring(q)), 2) end
  return s[f]
end

-- The interval's inter-token time (ms) by quantile name.
function _M.itl(s, q)
  local f = ITL_FIELD[q]
  if f == nil then error(format('limits.itl: "%s" is not one of mean, p50, p90, p99', tostring(q)), 2) end
  return s[f]
end

-- true when the endpoint never ran at half its limit during the interval:
-- its latency then says nothing about what the limit allows, so a rule
-- should not raise the limit on it (the demand, not the engine, held it).
function _M.app_limited(s)
  return s.max_inflight * 2 < s.limit
end

-- v kept in [s.min, s.max] (what C does to the answer).
function _M.clamp(v, s)
  local lo, hi = s.min, s.max
  if v < lo then return lo end
  if v > hi then return hi end
  return v
end

-- The cut of an interval with drops (429, 503, timeouts).  C cut the limit
-- once when they happened, so a rule cuts from the limit it answered before
-- them (last; s.limit when it has none) rather than compounding C's cut:
-- floor(last * factor), never above what C left (s.limit), kept in
-- [s.min, s.max].
function _M.cut(s, last, factor)
  local cur = s.limit
  local k = floor((last or cur) * factor)
  if k > cur then k = cur end
  return _M.clamp(k, s)
end

---------------------------------------------------------------------------
-- Rule modules.

local function label_of(mod)
  return type(mod) == "table" and type(mod.name) == "string" and mod.name ~= ""
    and format('limit rule "%s"', mod.name) or "limit rule"
end

-- Checks that mod is a limit rule: a table with name (string), version
-- (string), schema (table of config keys: sluice.schema) and limit
-- (function); slow_client and configure, when present, must be functions.
-- Returns true, or nil and one message naming everything wrong.
function _M.validate_policy(mod)
  if type(mod) ~= "table" then
    return nil, "a limit rule must return a table, got " .. type(mod)
  end
  local problems = {}
  local function want(field, t, what)
    local v = mod[field]
    if v == nil then
      problems[#problems + 1] = format('missing "%s" (%s)', field, what)
    elseif type(v) ~= t then
      problems[#problems + 1] = format('"%s" must be %s, got %s', field, what, type(v))
    end
  end
  want("name", "string", "a string")
  if mod.name == "" then problems[#problems + 1] = '"name" must not be empty' end
  want("version", "string", "a string")
  want("schema", "table", "a table of config keys; {} when there are none")
  want("limit", "function", "function(s, state, config) returning limit, reason")
  for _, f in ipairs { "slow_client", "configure" } do
    if mod[f] ~= nil and type(mod[f]) ~= "function" then
      problems[#problems + 1] = format('"%s" must be a function, got %s', f, type(mod[f]))
    end
  end
  if type(mod.schema) == "table" then
    local bad = schema.problems(mod.schema)
    for i = 1, #bad do problems[#problems + 1] = bad[i] end
  end
  if #problems > 0 then
    return nil, label_of(mod) .. ": " .. concat(problems, "; ")
  end
  return true
end

-- Builds a rule's config: every schema default, overridden by the
-- operator's values (checked against the schema), then handed to
-- mod.configure when the rule has one (it may add derived settings).
-- Returns the config table, or nil and a message naming the key.
function _M.configure(mod, overrides)
  local ok, err = _M.validate_policy(mod)
  if not ok then return nil, err end
  local cfg, cerr = schema.build(mod.schema, overrides, label_of(mod))
  if not cfg then return nil, cerr end
  if mod.configure then mod.configure(cfg) end
  return cfg
end

-- Checks limit()'s answer: a finite number (or an integer cdata), rounded
-- to the nearest integer and cut to the int32 range.  Returns the integer
-- and the reason (the rule's, or its name when it gave none), or nil and
-- what is wrong.
local function checked_limit(k, reason, name)
  if type(k) == "cdata" then k = tonumber(k) end
  if type(k) ~= "number" then
    return nil, format("limit() returned %s, not a finite number", k == nil and "nil" or "a " .. type(k))
  end
  if k ~= k then return nil, "limit() returned NaN, not a finite number" end
  if k == huge or k == -huge then
    return nil, format("limit() returned %s, not a finite number", k > 0 and "inf" or "-inf")
  end
  k = floor(k + 0.5)
  if k < INT32_MIN then k = INT32_MIN elseif k > INT32_MAX then k = INT32_MAX end
  if type(reason) == "number" then
    reason = tostring(reason)
  elseif type(reason) ~= "string" then
    reason = name
  end
  return k, reason
end

-- Checks slow_client()'s answer: "keep" (0) or "cancel" (1).  Returns the
-- number and the reason (or the rule's name), or nil and what is wrong.
local function checked_slow(word, reason, name)
  local v = word == "cancel" and 1 or word == "keep" and 0 or nil
  if v == nil then
    return nil, format('slow_client() returned %s, not "keep" or "cancel"',
      type(word) == "string" and format("%q", word) or word == nil and "nil" or "a " .. type(word))
  end
  if type(reason) == "number" then
    reason = tostring(reason)
  elseif type(reason) ~= "string" then
    reason = name
  end
  return v, reason
end

-- Calls mod.limit(s, state, config) and checks the answer as the
-- generation does.  s is a snapshot (cdata, or a table for new_stats),
-- state the endpoint's table (a fresh one when nil), overrides the config
-- (schema defaults when nil).  Returns limit, reason, or nil and a message
-- (a raised error's message keeps its file and line).  For `sluice repl`,
-- `sluice check` and specs.
function _M.run(mod, s, state, overrides)
  local cfg, err = _M.configure(mod, overrides)
  if not cfg then return nil, err end
  if type(s) == "table" then s = _M.new_stats(s) end
  local ok, k, reason = pcall(mod.limit, s, state or {}, cfg)
  if not ok then
    return nil, format("%s raised: %s", label_of(mod), tostring(k))
  end
  local v, why = checked_limit(k, reason, mod.name)
  if v == nil then return nil, label_of(mod) .. ": " .. why end
  return v, why
end

-- The same for mod.slow_client(c, config): returns "keep" or "cancel" and
-- the reason, or nil and a message (also when the rule has no slow_client).
function _M.run_slow_client(mod, c, overrides)
  local cfg, err = _M.configure(mod, overrides)
  if not cfg then return nil, err end
  if mod.slow_client == nil then return nil, label_of(mod) .. " has no slow_client" end
  if type(c) == "table" then c = _M.new_slow(c) end
  local ok, word, reason = pcall(mod.slow_client, c, cfg)
  if not ok then
    return nil, format("%s raised: %s", label_of(mod), tostring(word))
  end
  local v, why = checked_slow(word, reason, mod.name)
  if v == nil then return nil, label_of(mod) .. ": " .. why end
  return v == 1 and "cancel" or "keep", why
end

-- The limit phases' wrapper, for the loader (sluice.phases), called once
-- per entry ("limit", and "slow_client" when the rule has it): checks mod
-- as a limit rule, configures it with config (the operator's settings, or
-- nil), and returns the function the generation calls with the snapshot
-- as a light userdata.
--   limit: calls mod.limit(s, state, config), state being the endpoint's
--     table (made on its first call, kept while this generation lives);
--     answers the integer limit and the reason, or raises "path: limit()
--     returned ..." on an answer that is not a finite number.
--   slow_client: calls mod.slow_client(c, config); answers 1 (cancel) or 0
--     (keep) and the reason, or raises on any other answer.
-- Raises "path: message" when the module or the config is wrong.
function _M.bind(mod, entry, path, config)
  local valid, why = _M.validate_policy(mod)
  if not valid then error(path .. ": " .. why, 0) end
  local cfg, cerr = _M.configure(mod, config)
  if not cfg then error(path .. ": config: " .. cerr, 0) end
  local fn, name = mod[entry], mod.name
  if type(fn) ~= "function" then
    error(format('%s: "%s" must be a function, got %s', path, entry, type(fn)), 0)
  end
  if entry == "slow_client" then
    local slow_of = _M.slow_of
    return function(p)
      local word, why = fn(slow_of(p), cfg)
      local v, reason = checked_slow(word, why, name)
      if v == nil then error(path .. ": " .. reason, 0) end
      return v, reason
    end
  end
  local states, stats_of = {}, _M.stats_of
  return function(p)
    local s = stats_of(p)
    local id = s.endpoint_id
    local state = states[id]
    if state == nil then
      state = {}
      states[id] = state
    end
    local answer, why = fn(s, state, cfg)
    local k, reason = checked_limit(answer, why, name)
    if k == nil then error(path .. ": " .. reason, 0) end
    return k, reason
  end
end

---------------------------------------------------------------------------
-- Snapshots built from Lua, for specs and `sluice repl`.

local stats_t = ffi_typeof("sl_ffi_limit_stats_t")
local slow_t = ffi_typeof("sl_ffi_slow_client_t")
-- Strings a snapshot's pointers refer to, kept alive as long as it.
local anchors = setmetatable({}, { __mode = "k" })

-- The fields new_stats and new_slow take, with their defaults (false: one
-- computed from other fields, after the rest).
local STATS_FIELDS = {
  endpoint_id = 0, pool_id = 0, slots = 4, limit = false, min = 1, max = 64,
  inflight = 0, max_inflight = false, queued = 0, ready = 1, reserved = 0,
  interval_ms = 1000, now_ms = 0,
  started = 0, completed = 0, rate_limited = 0, unavailable = 0, timeouts = 0, errors = 0, drops = false,
  ttft_n = 0, ttft_mean = 0, ttft_p50 = 0, ttft_p90 = 0, ttft_p99 = 0,
  itl_n = 0, itl_mean = 0, itl_p50 = 0, itl_p90 = 0, itl_p99 = 0,
  sketch_error = 0.01, ttft_min = 0,
}
local STATS_STRINGS = { endpoint = true, pool = true }
local SLOW_FIELDS = {
  queued = 0, priority = 1, paused_ms = 0, age_ms = 0, tokens = 0, tokens_written = 0, pinned_bytes = 0,
}
local SLOW_STRINGS = { id = true, endpoint = true, pool = true, tenant = true }

local function fill(what, d, t, fields, strings, keep)
  for k, v in pairs(t) do
    if strings[k] then
      if type(v) ~= "string" then
        error(format("limits.%s: %s must be a string, got %s", what, k, type(v)), 3)
      end
      keep[#keep + 1] = v
      d[k] = v
    elseif fields[k] ~= nil then
      if type(v) ~= "number" and not (type(v) == "cdata" and tonumber(v)) then
        error(format("limits.%s: %s must be a number, got %s", what, k, type(v)), 3)
      end
      d[k] = v
    else
      error(format('limits.%s: unknown field "%s"', what, tostring(k)), 3)
    end
  end
  for k, default in pairs(fields) do
    if t[k] == nil and type(default) == "number" then d[k] = default end
  end
end

-- Builds an sl_ffi_limit_stats_t from a table of its fields; unset ones
-- take these defaults: endpoint = "ep<endpoint_id>", pool = "pool",
-- endpoint_id = 0, pool_id = 0, slots = 4, limit = slots, min = 1,
-- max = 64, inflight = 0, max_inflight = inflight, queued = 0, ready = 1,
-- interval_ms = 1000, sketch_error = 0.01, drops = rate_limited +
-- unavailable + timeouts, every other count and signal 0.  An unknown field
-- raises (a misspelt signal would otherwise read as 0).  Returns the struct
-- cdata (it converts to the const pointer a rule gets); its strings are
-- anchored to it.  Fields can be changed afterwards (s.ttft_p90 = 250).
function _M.new_stats(t)
  if t ~= nil and type(t) ~= "table" then error("limits.new_stats: expected a table of fields", 2) end
  t = t or {}
  local s, keep = stats_t(), {}
  fill("new_stats", s, t, STATS_FIELDS, STATS_STRINGS, keep)
  if t.limit == nil then s.limit = s.slots end
  if t.max_inflight == nil then s.max_inflight = s.inflight end
  if t.drops == nil then s.drops = s.rate_limited + s.unavailable + s.timeouts end
  if t.endpoint == nil then
    local name = "ep" .. s.endpoint_id
    keep[#keep + 1] = name
    s.endpoint = name
  end
  if t.pool == nil then
    keep[#keep + 1] = "pool"
    s.pool = "pool"
  end
  anchors[s] = keep
  return s
end

-- Builds an sl_ffi_slow_client_t the same way: id = "req-1", endpoint =
-- "ep0", pool = "pool", tenant = nil, queued = 0, priority = 1 (normal),
-- every time and count 0.
function _M.new_slow(t)
  if t ~= nil and type(t) ~= "table" then error("limits.new_slow: expected a table of fields", 2) end
  t = t or {}
  local c, keep = slow_t(), {}
  fill("new_slow", c, t, SLOW_FIELDS, SLOW_STRINGS, keep)
  for k, default in pairs { id = "req-1", endpoint = "ep0", pool = "pool" } do
    if t[k] == nil then
      keep[#keep + 1] = default
      c[k] = default
    end
  end
  anchors[c] = keep
  return c
end

return _M
