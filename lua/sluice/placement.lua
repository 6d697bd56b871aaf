-- sluice.placement: what a placement policy sees (runtime/lua/place_ffi.h) and
-- helpers for policy authors.
--
--   placement.context_of(p)                -- the context C hands the place()
--                                          -- wrapper (a light userdata), as cdata
--   placement.load(c)                      -- inflight / slots of a candidate
--   placement.name(c)                      -- its "host:port"
--   placement.tried(c)                     -- true if this request failed on it
--   placement.limit(c)                     -- its concurrency limit now (slots when unset)
--   placement.dynamics(c)                  -- its timing verdict's class name
--                                          -- ("periodic", "noise", ...) or nil
--   placement.validate_policy(mod)         -- true | nil, message
--   placement.configure(mod, overrides)    -- config (schema defaults + overrides) | nil, message
--   placement.run(mod, ctx)                -- index, reason | nil, message (checked call)
--   placement.bind(mod, entry, path, cfg)  -- for the loader (sluice.phases): the place() the
--                                          -- generation calls
--   placement.new_context(cands, req)      -- a context built from Lua tables
--
-- A policy module is a table { name, version, schema, place, [configure] };
-- place(ctx) reads ctx.cands[0 .. ctx.n - 1] (a 0-based cdata array) and
-- returns the 1-based index of its choice and a short reason.  The context
-- is valid only during that call: keep no pointer into it.  See
-- docs/policies.md.
local ffi = require "ffi"
local base = require "sluice.base"
local schema = require "sluice.schema"
local C = base.C

-- Mirrors runtime/lua/place_ffi.h exactly (tests/lua/placement_spec.lua
-- compares the two); SL_FFI_MAX_CANDIDATES is spelled out as 64.
local CDEF = [[
typedef struct {
  int32_t endpoint_id;   /* stable id of the endpoint (index in the registry) */
  int32_t pool_id;       /* index of its pool */
  int32_t slots;         /* streams it takes at once */
  int32_t inflight;      /* streams on it now */
  int32_t context_tokens;/* its pool's context size (0 = unknown) */
  int32_t tried;         /* 1 if this request already failed on it (a retry) */
  int32_t limit;         /* its concurrency limit now (its slots unless its pool adapts; docs/limit-rules.md) */
  int32_t queued;        /* requests waiting in its pool's admission queue now */
  int32_t dyn_class;     /* timing verdict: 0 fixed_point, 1 periodic, 2 chaotic, 3 noise, 4 trend
                            (sl_dyn_class_t); -1 = no verdict yet */
  int32_t dyn_samples;   /* inter-token gaps the verdict was computed over (0 = none) */
  double ewma_ttft_ms;   /* smoothed time to first token (0 = no sample yet) */
  double ewma_itl_ms;    /* smoothed inter-token time (0 = no sample yet) */
  double tokens_per_s;   /* smoothed decode speed of its streams */
  double error_rate;     /* smoothed share of attempts that failed, 0..1 */
  double dyn_lambda;     /* the verdict's largest Lyapunov exponent, per token (0 = none) */
  double dyn_age_ms;     /* how old the verdict is (0 = none) */
  const char *name;      /* "host:port" (borrowed) */
} sl_ffi_candidate_t;

typedef struct {
  const char *model;     /* requested model (borrowed) */
  int32_t n;             /* candidates */
  int32_t attempt;       /* 1 for the first attempt, 2.. for retries */
  int64_t prompt_chars;  /* size of the prompt in characters */
  int64_t max_tokens;    /* requested max tokens (0 = not given) */
  const char *session;   /* value of the session header, or NULL */
  uint64_t seed;         /* per-request random seed (deterministic policies ignore it) */
  sl_ffi_candidate_t cands[64];
} sl_ffi_place_ctx_t;
]]
ffi.cdef(CDEF)

local ffi_string, ffi_typeof = ffi.string, ffi.typeof
local type, tostring, pcall, error = type, tostring, pcall, error
local concat, format, floor = table.concat, string.format, math.floor

-- The names of a candidate's dyn_class values (sl_dyn_class_t in
-- analyzers/dynamics.h; sl_dyn_class_name spells them the same way).
local DYN_CLASSES = { [0] = "fixed_point", "periodic", "chaotic", "noise", "trend" }
local DYN_CLASS_OF = {}
for k = 0, 4 do DYN_CLASS_OF[DYN_CLASSES[k]] = k end

local _M = {
  CDEF = CDEF,
  MAX_CANDIDATES = 64, -- mirrors SL_FFI_MAX_CANDIDATES
  DYN_CLASSES = DYN_CLASSES, -- dyn_class value -> name (0-based)
}

local ctx_ptr = ffi_typeof("const sl_ffi_place_ctx_t *")

-- The placement context C passes to the generation's place() wrapper (a
-- light userdata: C cannot make cdata), as the FFI type the policy reads.
-- Each gateway fills its own context, so no process-wide "current" one.
function _M.context_of(p)
  return ffi.cast(ctx_ptr, p)
end

-- Streams in flight per slot (a candidate with no slots counts as one).
function _M.load(c)
  local slots = c.slots
  if slots < 1 then slots = 1 end
  return c.inflight / slots
end

-- The candidate's "host:port", or "endpoint <id>" when it has no name.
function _M.name(c)
  local p = c.name
  if p ~= nil then return ffi_string(p) end
  return "endpoint " .. c.endpoint_id
end

-- true if this request already failed on the candidate.
function _M.tried(c)
  return c.tried ~= 0
end

-- The candidate's concurrency limit now (adaptive pools move it; see
-- docs/limit-rules.md), or its slots when the context carries none (0).
function _M.limit(c)
  local limit = c.limit
  if limit < 1 then return c.slots end
  return limit
end

-- The class of the candidate's latest timing verdict ("fixed_point",
-- "periodic", "chaotic", "noise" or "trend"), or nil before its first.  A
-- table lookup: nothing is made per call.
function _M.dynamics(c)
  return DYN_CLASSES[c.dyn_class]
end

---------------------------------------------------------------------------
-- Policy modules.

-- Helpers shared by the shipped policies (and open to any policy).  They
-- take the context cdata and make nothing per call, so they stay on trace.

-- true if at least one candidate was not tried by this request; policies
-- pass tried ones over while any untried one remains.
function _M.any_untried(ctx)
  local cands = ctx.cands
  for i = 0, ctx.n - 1 do
    if cands[i].tried == 0 then return true end
  end
  return false
end

-- The 0-based index of the least loaded candidate (fewest streams per
-- slot, ties to the lowest endpoint_id), passing over tried ones when
-- `fresh` is true and the index `skip` (or -1); -1 when nothing is left.
-- Also returns the winner's inflight and slots.  Compared without division,
-- exactly as the C fallback (sl_placement_least_loaded in runtime/stream/placement.c).
function _M.least_loaded(ctx, fresh, skip)
  local cands = ctx.cands
  local best, bi, bs, bid = -1, 0, 0, 0
  for i = 0, ctx.n - 1 do
    local c = cands[i]
    if i ~= skip and (not fresh or c.tried == 0) then
      local inflight, slots, id = c.inflight, c.slots, c.endpoint_id
      if slots < 1 then slots = 1 end
      if best < 0 then
        best, bi, bs, bid = i, inflight, slots, id
      else
        -- int32 * int32 is exact in a double.
        local a, b = inflight * bs, bi * slots
        if a < b or (a == b and id < bid) then
          best, bi, bs, bid = i, inflight, slots, id
        end
      end
    end
  end
  return best, bi, bs
end

-- Checks that mod is a policy module: a table with name (string), version
-- (string), schema (table of config keys, each { type, default, [min],
-- [max], [values], [doc] }: sluice.schema) and place (function); configure,
-- when present, must be a function.  Returns true, or nil and one message naming everything wrong.
function _M.validate_policy(mod)
  if type(mod) ~= "table" then
    return nil, "a policy module must return a table, got " .. type(mod)
  end
  local label = type(mod.name) == "string" and mod.name ~= "" and format('policy "%s"', mod.name) or "policy"
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
  want("place", "function", "function(ctx) returning index, reason")
  if mod.configure ~= nil and type(mod.configure) ~= "function" then
    problems[#problems + 1] = '"configure" must be a function(config), got ' .. type(mod.configure)
  end
  if type(mod.schema) == "table" then
    local bad = schema.problems(mod.schema)
    for i = 1, #bad do problems[#problems + 1] = bad[i] end
  end
  if #problems > 0 then
    return nil, label .. ": " .. concat(problems, "; ")
  end
  return true
end

-- Builds a policy's config: every schema default, overridden by the
-- operator's values (checked against the schema), then hands it to
-- mod.configure when the policy has one.  Returns the config table, or nil
-- and a message naming the key.  mod must have passed validate_policy.
function _M.configure(mod, overrides)
  local ok, err = _M.validate_policy(mod)
  if not ok then return nil, err end
  local cfg, cerr = schema.build(mod.schema, overrides, format('policy "%s"', mod.name))
  if not cfg then return nil, cerr end
  if mod.configure then mod.configure(cfg) end
  return cfg
end

-- Calls mod.place(ctx) and checks its answer: an integer index in 1..ctx.n
-- and a string (or nil) reason.  Returns index, reason, or nil and a
-- message (a raised error's message keeps its file and line).  For
-- `sluice repl`, `sluice check` and tests; the relay does its own checks.
function _M.run(mod, ctx)
  local ok, idx, reason = pcall(mod.place, ctx)
  if not ok then
    return nil, format('policy "%s" raised: %s', tostring(mod.name), tostring(idx))
  end
  local n = ctx.n
  if type(idx) ~= "number" or idx % 1 ~= 0 or idx < 1 or idx > n then
    return nil, format('policy "%s" returned %s, not an index in 1..%d%s', tostring(mod.name), tostring(idx), n,
      type(reason) == "string" and " (" .. reason .. ")" or "")
  end
  if reason ~= nil and type(reason) ~= "string" then
    return nil, format('policy "%s" returned a %s reason, not a string', tostring(mod.name), type(reason))
  end
  return idx, reason
end

-- The placement phase's wrapper, for the loader (sluice.phases): checks mod
-- as a policy module, configures it with config (the operator's
-- placement.config, or nil), and returns the function the generation calls
-- with the context as a light userdata.  That function answers the 1-based
-- index of the chosen candidate and the reason (the policy's own, or its
-- name when it gave none); a policy that answers anything but an index in
-- 1..ctx.n raises "path: place() returned ...".  Raises "path: message"
-- when the module or the config is wrong.
function _M.bind(mod, entry, path, config)
  local valid, why = _M.validate_policy(mod)
  if not valid then error(path .. ": " .. why, 0) end
  local cfg, cerr = _M.configure(mod, config)
  if not cfg then error(path .. ": placement.config: " .. cerr, 0) end
  local place, name, context_of = mod[entry], mod.name, _M.context_of
  return function(p)
    local ctx = context_of(p)
    local k, reason = place(ctx)
    local n = ctx.n
    if type(k) ~= "number" or k % 1 ~= 0 or k < 1 or k > n then
      error(format("%s: place() returned %s, not a candidate index in 1..%d", path,
        type(k) == "number" and tostring(k) or "a " .. type(k), n), 0)
    end
    if type(reason) == "number" then
      reason = tostring(reason)
    elseif type(reason) ~= "string" then
      reason = name
    end
    return k, reason
  end
end

---------------------------------------------------------------------------
-- Contexts built from Lua, for tests and `sluice repl`.

local ctx_t = ffi_typeof("sl_ffi_place_ctx_t")
-- Strings a context's pointers refer to, kept alive as long as the context.
local anchors = setmetatable({}, { __mode = "k" })

local function num(v, default, what)
  if v == nil then return default end
  if type(v) ~= "number" then
    error(format("placement.new_context: %s must be a number, got %s", what, type(v)), 3)
  end
  return v
end

-- Builds an sl_ffi_place_ctx_t from an array of candidate tables
--   { endpoint_id = (i - 1), pool_id = 0, slots = 1, inflight = 0,
--     limit = slots, queued = 0,
--     context_tokens = 0, tried = false, ewma_ttft_ms = 0, ewma_itl_ms = 0,
--     tokens_per_s = 0, error_rate = 0, dyn_class = nil (none; or a class name
--     or its number), dyn_samples = 0, dyn_lambda = 0, dyn_age_ms = 0,
--     name = "ep<endpoint_id>" }
-- and an optional request table { model = "m", attempt = 1, prompt_chars = 0,
-- max_tokens = 0, session = nil, seed = 0 }.  Returns the struct cdata (it
-- converts to the const pointer a policy gets); its strings are anchored
-- to it.  Fields can be changed afterwards (ctx.cands[0].inflight = 3).
function _M.new_context(cands, req)
  if type(cands) ~= "table" then
    error("placement.new_context: candidates must be an array of tables", 2)
  end
  if req ~= nil and type(req) ~= "table" then
    error("placement.new_context: the request must be a table", 2)
  end
  req = req or {}
  local n = #cands
  if n > 64 then
    error("placement.new_context: at most 64 candidates, got " .. n, 2)
  end
  local ctx = ctx_t()
  local keep = {}
  local model = req.model or "m"
  if type(model) ~= "string" then error("placement.new_context: model must be a string", 2) end
  keep[#keep + 1] = model
  ctx.model = model
  ctx.n = n
  ctx.attempt = num(req.attempt, 1, "attempt")
  ctx.prompt_chars = num(req.prompt_chars, 0, "prompt_chars")
  ctx.max_tokens = num(req.max_tokens, 0, "max_tokens")
  if req.session ~= nil then
    if type(req.session) ~= "string" then error("placement.new_context: session must be a string", 2) end
    keep[#keep + 1] = req.session
    ctx.session = req.session
  end
  local seed = req.seed or 0
  if type(seed) == "number" then
    if seed < 0 or seed % 1 ~= 0 then error("placement.new_context: seed must be an integer >= 0", 2) end
  elseif type(seed) ~= "cdata" then
    error("placement.new_context: seed must be a number or a uint64_t", 2)
  end
  ctx.seed = seed
  for i = 1, n do
    local c = cands[i]
    if type(c) ~= "table" then
      error(format("placement.new_context: candidate %d must be a table, got %s", i, type(c)), 2)
    end
    local d = ctx.cands[i - 1]
    local id = num(c.endpoint_id, i - 1, "endpoint_id")
    d.endpoint_id = id
    d.pool_id = num(c.pool_id, 0, "pool_id")
    d.slots = num(c.slots, 1, "slots")
    d.inflight = num(c.inflight, 0, "inflight")
    d.limit = num(c.limit, d.slots, "limit")
    d.queued = num(c.queued, 0, "queued")
    d.context_tokens = num(c.context_tokens, 0, "context_tokens")
    d.tried = (c.tried == true or c.tried == 1) and 1 or 0
    d.ewma_ttft_ms = num(c.ewma_ttft_ms, 0, "ewma_ttft_ms")
    d.ewma_itl_ms = num(c.ewma_itl_ms, 0, "ewma_itl_ms")
    d.tokens_per_s = num(c.tokens_per_s, 0, "tokens_per_s")
    d.error_rate = num(c.error_rate, 0, "error_rate")
    local dc = c.dyn_class
    if type(dc) == "string" then
      if DYN_CLASS_OF[dc] == nil then
        error(format('placement.new_context: dyn_class "%s" is not one of fixed_point, periodic, chaotic, noise, trend', dc), 2)
      end
      dc = DYN_CLASS_OF[dc]
    elseif dc ~= nil and (type(dc) ~= "number" or dc % 1 ~= 0 or dc < -1 or dc > 4) then
      error("placement.new_context: dyn_class must be a class name or an integer from -1 to 4", 2)
    end
    d.dyn_class = dc or -1
    d.dyn_samples = num(c.dyn_samples, 0, "dyn_samples")
    d.dyn_lambda = num(c.dyn_lambda, 0, "dyn_lambda")
    d.dyn_age_ms = num(c.dyn_age_ms, 0, "dyn_age_ms")
    local name = c.name or ("ep" .. floor(id))
    if type(name) ~= "string" then error("placement.new_context: name must be a string", 2) end
    keep[#keep + 1] = name
    d.name = name
  end
  anchors[ctx] = keep
  return ctx
end

return _M
