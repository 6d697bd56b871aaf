-- Specs for lua/sluice/limits.lua and the shipped limit rules
-- (policies/limits/gradient.lua, aimd.lua, step.lua, fixed.lua), run
-- through the real wrapper (limits.bind, as the generation calls it) on
-- snapshots built with limits.new_stats: each rule's answer to rising and
-- to stable or falling TTFT under load, to an app-limited endpoint and to
-- a storm of 429s; the gradient rule on a tiny simulated engine of
-- capacity 4 from a low and a high start; the wrapper's checks and
-- messages; and the cdef mirroring runtime/lua/limit_ffi.h.
local ffi = require "ffi"
local limits = require "sluice.limits"
local phases = require "sluice.phases"
local gradient = require "limits.gradient"
local aimd = require "limits.aimd"
local step = require "limits.step"
local fixed = require "limits.fixed"

local floor = math.floor

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

-- C declarations without comments, preprocessor lines or spacing.
local function normalize(src)
  src = src:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " ")
  src = src:gsub("\n%s*#[^\n]*", "\n")
  return (src:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

-- What C hands a bound function: a pointer, not cdata.
local function ptr(cdata)
  return ffi.cast("void *", cdata)
end

-- An interval under load: every limit slot in use, TTFT and inter-token
-- time as given, plenty of samples.
local function loaded(ttft, itl)
  itl = itl or 20
  return {
    started = 20, completed = 20,
    ttft_n = 20, ttft_mean = ttft, ttft_p50 = ttft, ttft_p90 = ttft, ttft_p99 = ttft,
    itl_n = 400, itl_mean = itl, itl_p50 = itl, itl_p90 = itl, itl_p99 = itl,
  }
end

-- Runs rule (with config) through limits.bind, as the generation does, for
-- n intervals from the limit `start`.  interval(i, limit, last) gives the
-- fields of interval i's snapshot for the limit in force (and the one
-- before it); the answer, kept in [min, max] as C keeps it, is the next
-- interval's limit.  An interval with drops gets C's own cut first (x0.9,
-- once), as the gateway makes it when they happen.  Returns the answers,
-- the reasons and the limits the snapshots carried.
local function drive(rule, config, start, n, interval, bounds)
  local bound = limits.bind(rule, "limit", "rule.lua", config)
  local lim, last = start, start
  local got, why, seen = {}, {}, {}
  for i = 1, n do
    local t = interval(i, lim, last)
    t.min, t.max = bounds and bounds[1] or 1, bounds and bounds[2] or 64
    if t.max_inflight == nil then t.max_inflight = lim end
    local drops = (t.rate_limited or 0) + (t.unavailable or 0) + (t.timeouts or 0)
    if drops > 0 then lim = math.max(t.min, floor(lim * 0.9)) end
    t.limit = lim
    local s = limits.new_stats(t)
    local k, reason = bound(ptr(s))
    assert(type(k) == "number" and k == floor(k), "an integer answer")
    assert(type(reason) == "string", "a reason")
    k = limits.clamp(k, s)
    got[i], why[i], seen[i] = k, reason, lim
    last, lim = lim, k
  end
  return got, why, seen
end

local function strictly_falling(got, from, to)
  for i = from, to do
    if got[i] >= got[i - 1] then return false, i end
  end
  return true
end

local function never_falls(got, start)
  local prev = start
  for i = 1, #got do
    if got[i] < prev then return false, i end
    prev = got[i]
  end
  return true
end

describe("sluice.limits", function()
  it("mirrors runtime/lua/limit_ffi.h exactly", function()
    local header = read("runtime/lua/limit_ffi.h")
    local decls = header:match("(typedef struct {.-} sl_ffi_slow_client_t;)")
    assert.is_string(decls)
    assert.equals(normalize(decls), normalize(limits.CDEF))
    -- The layout C compiles to on this ABI (x86-64 / aarch64, LP64);
    -- tests/runtime/lua/test_limits.c checks the same numbers in C.
    assert.equals(232, ffi.sizeof("sl_ffi_limit_stats_t"))
    assert.equals(64, ffi.offsetof("sl_ffi_limit_stats_t", "interval_ms"))
    assert.equals(136, ffi.offsetof("sl_ffi_limit_stats_t", "ttft_n"))
    assert.equals(216, ffi.offsetof("sl_ffi_limit_stats_t", "sketch_error"))
    assert.equals(80, ffi.sizeof("sl_ffi_slow_client_t"))
    assert.equals(40, ffi.offsetof("sl_ffi_slow_client_t", "paused_ms"))
  end)

  it("builds snapshots from tables, with defaults, anchoring their strings", function()
    local s = limits.new_stats { endpoint_id = 3, slots = 8, inflight = 5, rate_limited = 2, timeouts = 1,
      ttft_n = 4, ttft_p90 = 250 }
    collectgarbage()
    collectgarbage()
    assert.equals("ep3", limits.endpoint(s))
    assert.equals("pool", limits.pool(s))
    assert.equals(8, s.limit) -- the slots
    assert.equals(5, s.max_inflight) -- inflight
    assert.equals(3, tonumber(s.drops))
    assert.equals(1, s.min)
    assert.equals(64, s.max)
    assert.equals(1, s.ready)
    assert.equals(250, limits.ttft(s, "p90"))
    assert.equals(0, limits.itl(s, "p50"))
    local back = limits.stats_of(ptr(s))
    assert.is_true(ffi.istype("const sl_ffi_limit_stats_t *", back))
    assert.equals(3, back.endpoint_id)

    local c = limits.new_slow { tenant = "acme", queued = 2, paused_ms = 1500, tokens = 40 }
    collectgarbage()
    assert.equals("req-1", ffi.string(c.id))
    assert.equals("acme", ffi.string(c.tenant))
    assert.equals(1, c.priority)
    assert.equals(40, tonumber(c.tokens))
    assert.is_true(limits.new_slow({}).tenant == nil)
    assert.is_true(ffi.istype("const sl_ffi_slow_client_t *", limits.slow_of(ptr(c))))
  end)

  it("raises on a malformed snapshot description", function()
    assert.has_error(function() limits.new_stats { ttft90 = 100 } end, 'limits.new_stats: unknown field "ttft90"')
    assert.has_error(function() limits.new_stats { limit = "4" } end,
      "limits.new_stats: limit must be a number, got string")
    assert.has_error(function() limits.new_stats { endpoint = 1 } end,
      "limits.new_stats: endpoint must be a string, got number")
    assert.has_error(function() limits.new_slow { paused = 1 } end, 'limits.new_slow: unknown field "paused"')
    assert.has_error(function() limits.ttft(limits.new_stats(), "p95") end,
      'limits.ttft: "p95" is not one of mean, p50, p90, p99')
  end)

  it("keeps one state table per endpoint for the bound function's life", function()
    local rule = { name = "count", version = "1", schema = {},
      limit = function(s, state)
        state.calls = (state.calls or 0) + 1
        return state.calls, nil
      end }
    local bound = limits.bind(rule, "limit", "count.lua")
    local a, b = limits.new_stats { endpoint_id = 0 }, limits.new_stats { endpoint_id = 1 }
    assert.same({ 1, "count" }, { bound(ptr(a)) }) -- no reason: the rule's name
    assert.same({ 2, "count" }, { bound(ptr(a)) })
    assert.same({ 1, "count" }, { bound(ptr(b)) })
    -- Another binding (another generation) starts afresh.
    assert.same({ 1, "count" }, { limits.bind(rule, "limit", "count.lua")(ptr(a)) })
  end)

  it("rounds answers to the nearest integer and cuts them to the int32 range", function()
    local answer
    local rule = { name = "r", version = "1", schema = {}, limit = function() return answer, 7 end }
    local bound = limits.bind(rule, "limit", "r.lua")
    local s = limits.new_stats()
    for _, case in ipairs { { 4.5, 5 }, { 4.49, 4 }, { -2.6, -3 }, { 1e300, 2147483647 }, { -1e300, -2147483648 },
      { 12LL, 12 } } do
      answer = case[1]
      local k, reason = bound(ptr(s))
      assert.equals(case[2], k)
      assert.equals("7", reason) -- a number reason becomes its text
    end
  end)

  it("refuses limit() answers that are not finite numbers", function()
    local answer
    local rule = { name = "r", version = "1", schema = {}, limit = function() return answer end }
    local bound = limits.bind(rule, "limit", "r.lua")
    local s = limits.new_stats()
    for _, case in ipairs {
      { "9", "r.lua: limit() returned a string, not a finite number" },
      { false, "r.lua: limit() returned a boolean, not a finite number" },
      { 0 / 0, "r.lua: limit() returned NaN, not a finite number" },
      { math.huge, "r.lua: limit() returned inf, not a finite number" },
      { -math.huge, "r.lua: limit() returned -inf, not a finite number" },
    } do
      answer = case[1]
      local ok, err = pcall(bound, ptr(s))
      assert.is_false(ok)
      assert.equals(case[2], err)
    end
    answer = nil
    local ok, err = pcall(bound, ptr(s))
    assert.is_false(ok)
    assert.equals("r.lua: limit() returned nil, not a finite number", err)
    -- limits.run says the same, with the rule's name instead of the path.
    assert.same({ nil, 'limit rule "r": limit() returned nil, not a finite number' }, { limits.run(rule, s) })
  end)

  it("binds slow_client: cancel 1, keep 0, anything else an error", function()
    local word
    local rule = { name = "s", version = "1", schema = {}, limit = function(s) return s.limit end,
      slow_client = function(c) return word, "because" end }
    local bound = limits.bind(rule, "slow_client", "s.lua")
    local c = limits.new_slow { queued = 1, paused_ms = 20000 }
    word = "cancel"
    assert.same({ 1, "because" }, { bound(ptr(c)) })
    word = "keep"
    assert.same({ 0, "because" }, { bound(ptr(c)) })
    for _, case in ipairs {
      { "maybe", 's.lua: slow_client() returned "maybe", not "keep" or "cancel"' },
      { true, 's.lua: slow_client() returned a boolean, not "keep" or "cancel"' },
      { 1, 's.lua: slow_client() returned a number, not "keep" or "cancel"' },
    } do
      word = case[1]
      local ok, err = pcall(bound, ptr(c))
      assert.is_false(ok)
      assert.equals(case[2], err)
    end
    word = nil
    local ok, err = pcall(bound, ptr(c))
    assert.is_false(ok)
    assert.equals('s.lua: slow_client() returned nil, not "keep" or "cancel"', err)
  end)

  it("refuses a module that is not a limit rule, naming everything wrong", function()
    local ok, err = pcall(limits.bind, { name = "half", version = "1", schema = {} }, "limit", "half.lua")
    assert.is_false(ok)
    assert.equals('half.lua: limit rule "half": missing "limit" (function(s, state, config) returning limit, reason)',
      err)
    ok, err = limits.validate_policy({ name = "x", limit = 3, slow_client = "no",
      schema = { k = { type = "number" } } })
    assert.is_nil(ok)
    assert.equals('limit rule "x": missing "version" (a string); '
      .. '"limit" must be function(s, state, config) returning limit, reason, got number; '
      .. '"slow_client" must be a function, got string; schema key "k" has no default', err)
    assert.same({ nil, "a limit rule must return a table, got number" }, { limits.validate_policy(3) })
    assert.is_true(limits.validate_policy(gradient))
    assert.is_true(limits.validate_policy(aimd))
    assert.is_true(limits.validate_policy(step))
    assert.is_true(limits.validate_policy(fixed))
  end)

  it("checks the config against the rule's schema", function()
    local cfg = assert(limits.configure(gradient))
    assert.equals("p90", cfg.signal)
    assert.equals(1.5, cfg.tolerance)
    assert.is_false(cfg.use_itl)
    for _, case in ipairs {
      { { bogus = 1 }, 'limit rule "gradient": unknown config key "bogus"' },
      { { tolerance = "2" }, 'limit rule "gradient": config key "tolerance" must be a number, got string' },
      { { long_window = 2.5 }, 'limit rule "gradient": config key "long_window" must be an integer, got number' },
      { { drop_factor = 1.5 }, 'limit rule "gradient": config key "drop_factor" = 1.5 is outside [0, 1]' },
      { { signal = "p95" }, 'limit rule "gradient": config key "signal" = "p95" is not one of mean, p50, p90, p99' },
    } do
      assert.same({ nil, case[2] }, { limits.configure(gradient, case[1]) })
    end
    -- Through bind, as the loader reports it.
    local ok, err = pcall(limits.bind, gradient, "limit", "g.lua", { use_itl = "yes" })
    assert.is_false(ok)
    assert.equals('g.lua: config: limit rule "gradient": config key "use_itl" must be a boolean, got string', err)
    -- A schema's list of values must hold its default.
    assert.same({ nil, 'limit rule "v": schema key "q": default "p95" is not one of p50, p90' },
      { limits.validate_policy({ name = "v", version = "1", limit = function() end,
        schema = { q = { type = "string", default = "p95", values = { "p50", "p90" } } } }) })
  end)

  it("loads through sluice.phases: slow_client is bound when the rule has it", function()
    local specs = {
      { name = "limit", entry = "limit", wrapper = "sluice.limits", optional = false },
      { name = "slow_client", entry = "slow_client", wrapper = "sluice.limits", optional = true },
    }
    local bound, name, version = phases.load("policies/limits/gradient.lua", { signal = "p50" }, specs)
    assert.equals("gradient", name)
    assert.equals("1.0.0", version)
    assert.is_function(bound[1])
    assert.is_function(bound[2])
    local t = loaded(100)
    t.limit, t.max_inflight = 8, 8
    local k, reason = bound[1](ptr(limits.new_stats(t)))
    assert.equals(9, k)
    assert.equals("ttft p50 100 ms vs 100 ms long: 1.00 -> 9", reason)
    bound = phases.load("policies/limits/aimd.lua", nil, specs)
    assert.is_function(bound[1])
    assert.is_false(bound[2])
  end)

  it("runs a rule for specs and the repl, keeping a raised error's file and line", function()
    local s = { limit = 8, max_inflight = 8, ttft_n = 20, ttft_p90 = 100 }
    assert.same({ 9, "aimd: ttft p90 100 ms: 8 -> 9" }, { limits.run(aimd, s) })
    local rule = { name = "boom", version = "1", schema = {}, limit = function() error("no") end }
    local k, err = limits.run(rule, s)
    assert.is_nil(k)
    assert.matches('^limit rule "boom" raised: .*limits_spec.lua:%d+: no$', err)
    assert.same({ nil, 'limit rule "aimd": unknown config key "x"' }, { limits.run(aimd, s, nil, { x = 1 }) })
    assert.same({ nil, 'limit rule "aimd" has no slow_client' }, { limits.run_slow_client(aimd, {}) })
    assert.same({ "keep", "client paused 0.0 s, nothing waits" }, { limits.run_slow_client(gradient, {}) })
  end)
end)

describe("limit rule gradient", function()
  it("lowers the limit while TTFT rises over its long-term average", function()
    local got, why = drive(gradient, { probe_every = 0 }, 16, 30, function(i)
      return loaded(i <= 15 and 100 or 400)
    end)
    assert.is_true(got[15] > 16) -- it grew while the TTFT held
    assert.is_true(strictly_falling(got, 16, 30))
    -- (1.5 * 100 + 4 * 20) / 400: long with tolerance, and four
    -- inter-token times of slack for batching.
    assert.matches("^ttft p90 400 ms vs 100 ms long: 0%.57 %-> %d+$", why[16])
  end)

  it("raises the limit under load while TTFT holds or falls", function()
    local got = drive(gradient, { probe_every = 0 }, 8, 30, function() return loaded(100) end)
    assert.is_true(never_falls(got, 8))
    assert.is_true(got[30] >= 20)
    got = drive(gradient, { probe_every = 0 }, 8, 20, function(i) return loaded(400 - 15 * i) end)
    assert.is_true(never_falls(got, 8))
    assert.is_true(got[20] > 12)
  end)

  it("does not raise the limit of an app-limited endpoint", function()
    local got, why = drive(gradient, { probe_every = 0 }, 16, 20, function()
      local t = loaded(100)
      t.max_inflight = 3
      return t
    end)
    for i = 1, 20 do assert.equals(16, got[i]) end
    assert.equals("ttft p90 100 ms vs 100 ms long: 1.00 -> 16 (app-limited: 3 of 16 streams)", why[20])
  end)

  it("falls to min in a storm of 429s and never rises while it lasts", function()
    local got, why, seen = drive(gradient, nil, 32, 30, function(i)
      local t = loaded(100)
      if i > 2 and i <= 25 then t.rate_limited = 5 end
      return t
    end)
    assert.same({ 33, 34 }, { got[1], got[2] })
    for i = 3, 25 do
      assert.is_true(got[i] <= seen[i]) -- never above what C's cut left
      assert.is_true(got[i] <= got[i - 1])
    end
    assert.equals(1, got[15])
    assert.equals(1, got[25])
    -- Cut from the limit answered before the drops (34), not from what C's
    -- own cut left (30): the two cuts do not compound.
    assert.equals(30, seen[3])
    assert.equals(25, got[3])
    assert.equals("5 drops: 30 -> 25 (x0.75 of 34)", why[3])
    assert.is_true(got[30] > 1) -- the storm over, it grows again
  end)

  it("keeps the limit until thin intervals have min_samples TTFT samples between them", function()
    -- Two samples an interval: the third brings the pool to six, and the
    -- rule reads their sample-weighted p90, (2*100 + 2*100 + 2*400) / 6.
    local got, why = drive(gradient, nil, 16, 3, function(i)
      local t = loaded(i < 3 and 100 or 400)
      t.ttft_n, t.ttft_min = 2, 100
      return t
    end)
    assert.same({ 16, 16, 17 }, got)
    assert.equals("2 ttft samples (< 5): keep 16", why[1])
    assert.equals("4 ttft samples in 2 intervals (< 5): keep 16", why[2])
    assert.equals("ttft p90 200 ms vs 152 ms long: 1.00 -> 17", why[3])
  end)

  it("takes the smaller limit of the TTFT and the inter-token gradients", function()
    local function itl_rises(i)
      return loaded(100, i <= 5 and 20 or 60)
    end
    local got, why = drive(gradient, { use_itl = true, probe_every = 0 }, 16, 15, itl_rises)
    -- Down to where sqrt(limit) of room to queue balances the gradient.
    assert.is_true(strictly_falling(got, 6, 12))
    assert.is_true(got[15] <= got[5] - 6)
    assert.matches("^itl p90 60 ms vs %d+ ms long: 0%.%d+ %-> %d+$", why[6])
    got = drive(gradient, { use_itl = false, probe_every = 0 }, 16, 15, itl_rises)
    assert.is_true(never_falls(got, 16))
  end)

  -- A tiny engine of capacity C = 4: at a limit of 4 or less no stream
  -- waits and the TTFT p90 is the baseline (100 ms); past 4 new streams
  -- wait for one to finish, so it is the baseline plus a stream's
  -- duration (1 s).  Demand always exceeds the limit; streams admitted
  -- under the last interval's limit still run when the next one starts.
  local function engine(_, lim, last)
    local t = loaded(lim <= 4 and 100 or 1100)
    t.max_inflight = math.max(lim, last)
    return t
  end

  -- The first interval from which every answer stays within 1 of 4,
  -- leaving out the intervals a baseline probe holds the limit down.
  local function settled(got, why)
    local from
    for i = 1, #got do
      local probe = why[i]:find("^probe") ~= nil
      if math.abs(got[i] - 4) > 1 and not probe then
        from = nil
      elseif not from and not probe then
        from = i
      end
    end
    return from
  end

  it("settles within 1 of an engine's capacity from a low start", function()
    local got, why = drive(gradient, nil, 1, 600, engine)
    local from = settled(got, why)
    assert.is_truthy(from)
    assert.is_true(from <= 20)
    -- The knee: it sits at 4 and tries 5 again, and again backs off.
    local fours, fives = 0, 0
    for i = from, #got do
      if got[i] == 4 then fours = fours + 1 elseif got[i] == 5 then fives = fives + 1 end
    end
    assert.is_true(fours > fives and fives > 100)
  end)

  it("settles within 1 of an engine's capacity from a high start, by probing for the no-load TTFT", function()
    local got, why = drive(gradient, nil, 32, 600, engine)
    -- Saturated from the start, its long-term TTFT is the queueing one and
    -- the gradient cannot tell; the first probe (after probe_first, 10
    -- intervals, since the rule has never seen a light one) finds the
    -- baseline, and the limit comes down.
    local probe
    for i = 1, #got do
      if why[i]:find("^probe: %d+ %-> 1 ") then probe = probe or i end
    end
    assert.equals(10, probe)
    local from = settled(got, why)
    assert.is_truthy(from)
    assert.is_true(from <= probe + 60)
    assert.matches("^probe: ttft p90 100 ms at 1 streams, long 1100 %-> 100 ms; back to %d+$", why[probe + 2])
    -- Then every probe_every (300) intervals without a light one, as the
    -- knee at 4 never runs light.
    local later = 0
    for i = probe + 1, #got do
      if why[i]:find("^probe: %d+ %-> 1 ") then later = later + 1 end
    end
    assert.equals(1, later)
  end)

  it("settles from a high start at once when the first streams showed the no-load TTFT (ttft_min)", function()
    -- The first interval's first streams found free slots (min 100 ms);
    -- from then on every stream waits, so min is the queueing one too.
    local got, why = drive(gradient, { probe_every = 0 }, 32, 200, function(i, lim, last)
      local t = engine(i, lim, last)
      t.ttft_min = (i == 1 or lim <= 4) and 100 or 1100
      return t
    end)
    local from = settled(got, why)
    assert.is_truthy(from)
    assert.is_true(from <= 40)
  end)

  it("without the probe or ttft_min, a high start never finds an engine's capacity", function()
    local got = drive(gradient, { probe_every = 0 }, 32, 600, engine)
    for i = 1, #got do assert.is_true(got[i] >= 32) end
  end)

  -- The engine bench/converge runs (the simulated one, 4 slots, a stream
  -- 200 ms, 100 ms to the first token) under 16 closed-loop clients, in
  -- intervals of 500 ms: min(limit, 16) streams are on it; it completes
  -- 2.5 streams an interval per busy slot, so a limit of 1 gives 2 or 3
  -- TTFT samples an interval; the streams past its 4 slots wait for
  -- ceil(waiting / 4) rounds of 200 ms, and the p90 is the last round's.
  -- Once it is oversubscribed, even its fastest stream waited, except in
  -- the first interval, when it started empty.  `slower` from interval
  -- `at` on: the same with every time that many times longer.
  local function closed_loop(slower, at)
    return function(i, lim, last)
      local k = (at and i >= at) and slower or 1
      local on = math.min(math.max(lim, last), 16)
      local busy = math.min(on, 4)
      local t = loaded(100 * k, 10 * k)
      t.max_inflight = on
      t.ttft_n = floor(busy * 2.5 / k + (i % 2) * 0.5)
      t.itl_n = t.ttft_n * 16
      if on > 4 then
        t.ttft_p90 = (100 + 200 * math.ceil((on - 4) / 4)) * k
        t.ttft_min = i == 1 and 100 * k or (100 + 200) * k
      else
        t.ttft_min = 100 * k
      end
      return t
    end
  end

  -- Every answer from interval `from` on (to `to`) is within 1 of 4.
  local function within_one_from(got, from, to)
    for i = from, to or #got do
      if math.abs(got[i] - 4) > 1 then return false, i, got[i] end
    end
    return true
  end

  it("settles within 1 of 4 slots under a closed loop, from 1 and from 24, and stays", function()
    -- At 1 an interval has 2 or 3 samples: they pool, and the limit grows.
    -- From 24 long comes from the first streams, and queueing never enters
    -- it, so the limit does not creep back up at the sqrt(limit) balance.
    for _, start in ipairs { 1, 24 } do
      local got = drive(gradient, nil, start, 240, closed_loop())
      assert.is_true(within_one_from(got, 40), "start " .. start)
    end
  end)

  -- An engine bound by its CPU (llama-server, 4 slots, one thread, the
  -- real-engine test's tiny model, as bench/converge measured it), under
  -- 16 closed-loop clients of 16 tokens: every stream in the batch adds a
  -- millisecond to a decode step, and a first token takes 2.5 ms a stream
  -- (its prefill shares the steps), so the TTFT doubles with a second
  -- stream, where Gradient2's tolerance (1.5) would call it queueing.
  -- Streams past the 4 slots wait a whole stream (16 steps) per round.
  -- The first interval of a high start runs 16 prefills at once (40 ms,
  -- its smallest TTFT).
  local function cpu_engine(i, lim, last)
    local on = math.min(math.max(lim, last), 16)
    local busy = math.min(on, 4)
    local itl, unqueued = busy, 2.5 * busy
    local t = loaded(unqueued, itl)
    t.max_inflight = on
    t.ttft_n = floor(busy * 500 / (unqueued + 16 * itl))
    t.itl_n = t.ttft_n * 15
    t.ttft_min = unqueued
    if on > 4 then
      t.ttft_p90 = unqueued + 16 * itl * math.ceil((on - 4) / 4)
      t.ttft_min = i == 1 and 40 or unqueued + itl
    end
    return t
  end

  it("tells an engine's batching from queueing: within 1 of 4 slots on a CPU-bound engine, from 1 and 24", function()
    for _, start in ipairs { 1, 24 } do
      local got, why = drive(gradient, nil, start, 240, cpu_engine)
      local from = settled(got, why)
      assert.is_truthy(from, "start " .. start)
      assert.is_true(from <= 80, "start " .. start .. " settled at " .. tostring(from))
    end
    -- Without the slack, the batching of a second and third stream reads
    -- as queueing and the engine is held below its slots.
    local got = drive(gradient, { batch_slack = 0 }, 1, 240, cpu_engine)
    for i = 40, 240 do assert.is_true(got[i] <= 3, "interval " .. i .. ": " .. got[i]) end
  end)

  it("follows an engine that became slower: the limit falls, a light interval measures it, and it settles again",
    function()
      local got, why = drive(gradient, nil, 4, 400, closed_loop(3, 100))
      assert.is_true(within_one_from(got, 40, 99))
      -- The new baseline (300 ms) is measured at s.min streams, and from
      -- there the limit finds 4 again.
      local light
      for i = 100, #got do
        if got[i - 1] == 1 and why[i]:find("^ttft p90 300 ms vs 300 ms long") then light = light or i end
      end
      assert.is_truthy(light)
      assert.is_true(within_one_from(got, light + 40))
    end)

  it("cancels a slow client only while requests wait", function()
    local bound = limits.bind(gradient, "slow_client", "g.lua", { slow_client_ms = 5000 })
    assert.same({ 1, "client paused 6.0 s (> 5.0 s) while 3 wait" },
      { bound(ptr(limits.new_slow { queued = 3, paused_ms = 6000 })) })
    assert.same({ 0, "client paused 6.0 s, nothing waits" },
      { bound(ptr(limits.new_slow { queued = 0, paused_ms = 6000 })) })
    assert.same({ 0, "client paused 4.0 s (<= 5.0 s)" },
      { bound(ptr(limits.new_slow { queued = 3, paused_ms = 4000 })) })
  end)
end)

describe("limit rule aimd", function()
  it("multiplies the limit by backoff while TTFT is over timeout_ms", function()
    local got, why = drive(aimd, nil, 16, 4, function() return loaded(6000) end)
    assert.same({ 14, 12, 10, 9 }, got)
    assert.equals("aimd: ttft p90 6000 ms > 5000 ms: 16 -> 14", why[1])
  end)

  it("adds one per interval under load while TTFT holds", function()
    local got = drive(aimd, nil, 8, 5, function() return loaded(100) end)
    assert.same({ 9, 10, 11, 12, 13 }, got)
  end)

  it("does not raise the limit of an app-limited endpoint, nor without samples", function()
    local got, why = drive(aimd, nil, 16, 3, function()
      local t = loaded(100)
      t.max_inflight = 7
      return t
    end)
    assert.same({ 16, 16, 16 }, got)
    assert.equals("aimd: app-limited (7 of 16 streams): keep 16", why[1])
    got = drive(aimd, nil, 16, 2, function() return { max_inflight = 16 } end)
    assert.same({ 16, 16 }, got)
  end)

  it("falls to min in a storm of 429s and never rises while it lasts", function()
    local got, _, seen = drive(aimd, nil, 32, 40, function(i)
      local t = loaded(100)
      if i <= 35 then t.rate_limited = 2 end
      return t
    end)
    for i = 1, 35 do
      assert.is_true(got[i] <= seen[i])
      assert.is_true(i == 1 or got[i] <= got[i - 1])
    end
    assert.equals(1, got[35])
    assert.same({ 2, 3, 4, 5, 6 }, { got[36], got[37], got[38], got[39], got[40] })
  end)
end)

describe("limit rule step", function()
  local cfg = { target_ms = 500, band = 0.5, step = 2 }

  it("moves by step: up below the target, down above the band, else stays", function()
    local ttft = { 200, 200, 900, 600, 749, 751, 200 }
    local got, why = drive(step, cfg, 10, #ttft, function(i) return loaded(ttft[i]) end)
    assert.same({ 12, 14, 12, 12, 12, 10, 12 }, got)
    assert.equals("step: ttft p90 900 ms > 750 ms: 14 -> 12", why[3])
    assert.equals("step: ttft p90 600 ms in [500, 750] ms: keep 12", why[4])
  end)

  it("does not raise the limit of an app-limited endpoint", function()
    local got = drive(step, cfg, 10, 3, function()
      local t = loaded(200)
      t.max_inflight = 4
      return t
    end)
    assert.same({ 10, 10, 10 }, got)
  end)

  it("halves in a storm of 429s down to min and never rises while it lasts", function()
    local got, _, seen = drive(step, cfg, 30, 11, function(i)
      local t = loaded(200)
      if i > 1 and i <= 9 then t.unavailable = 1 end
      return t
    end)
    assert.same({ 32, 16, 8, 4, 2, 1, 1, 1, 1, 3, 5 }, got)
    for i = 2, 9 do assert.is_true(got[i] <= seen[i]) end
  end)
end)

describe("limit rule fixed", function()
  it("keeps the limit where it is, whatever the TTFT", function()
    local got, why = drive(fixed, nil, 12, 4, function(i) return loaded(i * 1000) end)
    assert.same({ 12, 12, 12, 12 }, got)
    assert.equals("fixed: 12", why[4])
  end)

  it("holds the configured limit when it has one", function()
    local got, why = drive(fixed, { limit = 8 }, 12, 3, function() return loaded(100) end)
    assert.same({ 8, 8, 8 }, got)
    assert.equals("fixed: 8 (config)", why[1])
  end)

  it("never rises through a storm of 429s: it keeps what C's cuts leave", function()
    local got, _, seen = drive(fixed, nil, 20, 5, function()
      local t = loaded(100)
      t.rate_limited = 1
      return t
    end)
    assert.same(seen, got)
    assert.same({ 18, 16, 14, 12, 10 }, got)
  end)
end)
