-- Specs for lua/sluice/placement.lua and the shipped placement policies
-- (policies/placement/least_loaded.lua, p2c.lua), on contexts built with
-- placement.new_context: choices, determinism, tie-breaks, retries that
-- avoid tried candidates, the n == 1 and n == 0 fallbacks, validation
-- messages, and the cdef mirroring runtime/lua/place_ffi.h.
local ffi = require "ffi"
local placement = require "sluice.placement"
local least_loaded = require "placement.least_loaded"
local p2c = require "placement.p2c"

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

-- As the relay hands it over: a const pointer to the context.
local function ptr(ctx)
  return ffi.cast("const sl_ffi_place_ctx_t *", ctx)
end

local function ids(ctx, idx)
  return ctx.cands[idx - 1].endpoint_id
end

describe("sluice.placement", function()
  it("mirrors runtime/lua/place_ffi.h exactly", function()
    local header = read("runtime/lua/place_ffi.h")
    local max = tonumber(header:match("#define SL_FFI_MAX_CANDIDATES (%d+)"))
    assert.equals(max, placement.MAX_CANDIDATES)
    local decls = header:match("(typedef struct.-} sl_ffi_place_ctx_t;)")
    assert.is_string(decls)
    decls = decls:gsub("SL_FFI_MAX_CANDIDATES", tostring(max))
    assert.equals(normalize(decls), normalize(placement.CDEF))
    -- The layout C compiles to on this ABI (x86-64 / aarch64, LP64).
    assert.equals(96, ffi.sizeof("sl_ffi_candidate_t"))
    assert.equals(40, ffi.offsetof("sl_ffi_candidate_t", "ewma_ttft_ms")) -- ten int32 before the doubles
    assert.equals(48 + 64 * 96, ffi.sizeof("sl_ffi_place_ctx_t"))
    assert.equals(48, ffi.offsetof("sl_ffi_place_ctx_t", "cands"))
  end)

  it("casts the pointer C hands the place() wrapper to the context type", function()
    local ctx = placement.new_context({ { name = "a:1", slots = 4, inflight = 1 } }, { model = "m" })
    local p = ffi.cast("void *", ctx) -- what a light userdata carries
    local back = placement.context_of(p)
    assert.is_true(ffi.istype("const sl_ffi_place_ctx_t *", back))
    assert.equals(1, back.n)
    assert.equals(4, back.cands[0].slots)
  end)

  it("builds contexts from tables, anchoring their strings", function()
    local ctx = placement.new_context({
      { name = "a:1", slots = 4, inflight = 2, tried = true, ewma_ttft_ms = 12.5, error_rate = 0.25 },
      { endpoint_id = 7, pool_id = 2, context_tokens = 8192, tokens_per_s = 30, ewma_itl_ms = 20 },
    }, { model = "llama", attempt = 2, prompt_chars = 1000, max_tokens = 64, session = "s-1", seed = 99 })
    collectgarbage()
    collectgarbage()
    assert.equals(2, ctx.n)
    assert.equals("llama", ffi.string(ctx.model))
    assert.equals("s-1", ffi.string(ctx.session))
    assert.equals(2, ctx.attempt)
    assert.equals(1000, tonumber(ctx.prompt_chars))
    assert.equals(64, tonumber(ctx.max_tokens))
    assert.equals(99, tonumber(ctx.seed))
    local a, b = ctx.cands[0], ctx.cands[1]
    assert.equals("a:1", placement.name(a))
    assert.equals("ep7", placement.name(b))
    assert.equals(0, a.endpoint_id)
    assert.equals(4, a.slots)
    assert.equals(1, b.slots)
    assert.is_true(placement.tried(a))
    assert.is_false(placement.tried(b))
    assert.equals(0.5, placement.load(a))
    assert.equals(12.5, a.ewma_ttft_ms)
    assert.equals(8192, b.context_tokens)
    assert.equals(2, b.pool_id)
    -- No session: a NULL pointer.
    local c2 = placement.new_context({ {} })
    assert.is_true(c2.session == nil)
    -- A seed can be a full uint64.
    local c3 = placement.new_context({ {}, {} }, { seed = 0xffffffffffffffffULL })
    assert.is_true(c3.seed == 0xffffffffffffffffULL)
  end)

  it("carries each candidate's limit and its pool's queue", function()
    local ctx = placement.new_context({
      { slots = 4 },
      { slots = 4, limit = 6, queued = 3 },
      { slots = 2, limit = 0 },
    })
    local a, b, c = ctx.cands[0], ctx.cands[1], ctx.cands[2]
    assert.equals(4, a.limit) -- the slots, unless given
    assert.equals(0, a.queued)
    assert.equals(4, placement.limit(a))
    assert.equals(6, b.limit)
    assert.equals(3, b.queued)
    assert.equals(6, placement.limit(b))
    assert.equals(2, placement.limit(c)) -- none carried: the slots
    assert.has_error(function() placement.new_context({ { queued = "3" } }) end,
      "placement.new_context: queued must be a number, got string")
  end)

  it("names each candidate's timing verdict, nil before the first", function()
    local ctx = placement.new_context({
      {},
      { dyn_class = "periodic", dyn_samples = 512, dyn_lambda = 0.01, dyn_age_ms = 1500 },
      { dyn_class = 3 },
      { dyn_class = -1 },
    })
    local a, b, c, d = ctx.cands[0], ctx.cands[1], ctx.cands[2], ctx.cands[3]
    assert.equals(-1, a.dyn_class)
    assert.is_nil(placement.dynamics(a))
    assert.equals(1, b.dyn_class)
    assert.equals("periodic", placement.dynamics(b))
    assert.equals(512, b.dyn_samples)
    assert.equals(0.01, b.dyn_lambda)
    assert.equals(1500, b.dyn_age_ms)
    assert.equals("noise", placement.dynamics(c))
    assert.is_nil(placement.dynamics(d))
    -- Every class the C side can store has a name, spelled as sl_dyn_class_name does.
    local want = { [0] = "fixed_point", "periodic", "chaotic", "noise", "trend" }
    for k = 0, 4 do
      assert.equals(want[k], placement.DYN_CLASSES[k])
      assert.equals(k, placement.new_context({ { dyn_class = want[k] } }).cands[0].dyn_class)
    end
    local src = read("analyzers/dynamics.c")
    for k = 0, 4 do
      assert.is_truthy(src:find('return "' .. want[k] .. '";', 1, true))
    end
    assert.has_error(function() placement.new_context({ { dyn_class = "erratic" } }) end,
      'placement.new_context: dyn_class "erratic" is not one of fixed_point, periodic, chaotic, noise, trend')
    assert.has_error(function() placement.new_context({ { dyn_class = 5 } }) end,
      "placement.new_context: dyn_class must be a class name or an integer from -1 to 4")
  end)

  it("raises on a malformed context description", function()
    assert.has_error(function() placement.new_context("x") end)
    assert.has_error(function() placement.new_context({ 1 }) end)
    assert.has_error(function() placement.new_context({ { slots = "4" } }) end)
    assert.has_error(function() placement.new_context({}, { seed = -1 }) end)
    local many = {}
    for i = 1, 65 do many[i] = {} end
    local ok, err = pcall(function() placement.new_context(many) end)
    assert.is_false(ok)
    assert.matches("placement_spec.lua:%d+: placement.new_context: at most 64 candidates, got 65", err)
  end)

  describe("validate_policy", function()
    it("accepts the shipped policies", function()
      assert.is_true(placement.validate_policy(least_loaded))
      assert.is_true(placement.validate_policy(p2c))
    end)

    it("names what is missing", function()
      local ok, err = placement.validate_policy(nil)
      assert.is_nil(ok)
      assert.equals("a policy module must return a table, got nil", err)
      ok, err = placement.validate_policy(function() end)
      assert.equals("a policy module must return a table, got function", err)
      ok, err = placement.validate_policy({})
      assert.equals('policy: missing "name" (a string); missing "version" (a string); '
        .. 'missing "schema" (a table of config keys; {} when there are none); '
        .. 'missing "place" (function(ctx) returning index, reason)', err)
      ok, err = placement.validate_policy({ name = "mine", version = "1", schema = {} })
      assert.equals('policy "mine": missing "place" (function(ctx) returning index, reason)', err)
      ok, err = placement.validate_policy({ name = "mine", version = 1, schema = {}, place = print })
      assert.equals('policy "mine": "version" must be a string, got number', err)
      ok, err = placement.validate_policy({ name = "", version = "1", schema = {}, place = print })
      assert.equals('policy: "name" must not be empty', err)
      ok, err = placement.validate_policy({ name = "mine", version = "1", schema = {}, place = print,
        configure = true })
      assert.equals('policy "mine": "configure" must be a function(config), got boolean', err)
    end)

    it("checks the schema entries", function()
      local function with(schema)
        local _, err = placement.validate_policy({ name = "s", version = "1", schema = schema, place = print })
        return err
      end
      assert.equals('policy "s": schema key "w" must be a table { type = ..., default = ... }, got number',
        with { w = 1 })
      assert.equals('policy "s": schema key "w" has type "float" (want "number", "integer", "string" or "boolean")',
        with { w = { type = "float", default = 1 } })
      assert.equals('policy "s": schema key "w" has type nil (want "number", "integer", "string" or "boolean")',
        with { w = { default = 1 } })
      assert.equals('policy "s": schema key "w" has no default', with { w = { type = "number" } })
      assert.equals('policy "s": schema key "w": default must be an integer, got number',
        with { w = { type = "integer", default = 1.5 } })
      assert.equals('policy "s": schema key "w": min applies to numbers only and must be a number',
        with { w = { type = "string", default = "x", min = 1 } })
      assert.equals('policy "s": schema key "w": default 5 is outside [0, 1]',
        with { w = { type = "number", default = 5, min = 0, max = 1 } })
      assert.equals('policy "s": schema keys must be strings, got number', with { { type = "number", default = 1 } })
      assert.is_nil(with { w = { type = "boolean", default = false, doc = "fine" } })
    end)
  end)

  describe("configure", function()
    after_each(function()
      assert(placement.configure(p2c, {})) -- back to the defaults
    end)

    it("merges defaults with overrides and hands them to the policy", function()
      local cfg = assert(placement.configure(p2c))
      assert.same({ error_weight = 4, decode_tokens = 32, floor_ms = 1 }, cfg)
      cfg = assert(placement.configure(p2c, { error_weight = 0 }))
      assert.equals(0, cfg.error_weight)
      assert.equals(32, cfg.decode_tokens)
      assert.same({}, assert(placement.configure(least_loaded, {})))
    end)

    it("rejects unknown keys, wrong types and values out of range", function()
      local cfg, err = placement.configure(p2c, { bogus = 1 })
      assert.is_nil(cfg)
      assert.equals('policy "p2c": unknown config key "bogus"', err)
      cfg, err = placement.configure(p2c, { error_weight = "4" })
      assert.equals('policy "p2c": config key "error_weight" must be a number, got string', err)
      cfg, err = placement.configure(p2c, { floor_ms = -1 })
      assert.equals('policy "p2c": config key "floor_ms" = -1 is outside [0, inf]', err)
      cfg, err = placement.configure({ name = "x" }, {})
      assert.matches('^policy "x": missing "version"', err)
    end)
  end)

  describe("run", function()
    local ctx = placement.new_context({ {}, {} })

    it("returns a checked choice", function()
      local idx, reason = placement.run(least_loaded, ctx)
      assert.equals(1, idx)
      assert.equals("least loaded: ep0 at 0/1 streams", reason)
    end)

    it("reports a policy that raises, with file and line", function()
      local bad = { name = "bad", version = "1", schema = {}, place = function() error("boom") end }
      local idx, err = placement.run(bad, ctx)
      assert.is_nil(idx)
      assert.matches('^policy "bad" raised: .*placement_spec.lua:%d+: boom$', err)
    end)

    it("reports an index out of range", function()
      local bad = { name = "bad", version = "1", schema = {}, place = function() return 3, "third" end }
      local idx, err = placement.run(bad, ctx)
      assert.is_nil(idx)
      assert.equals('policy "bad" returned 3, not an index in 1..2 (third)', err)
      bad.place = function() return 1.5 end
      assert.equals('policy "bad" returned 1.5, not an index in 1..2', select(2, placement.run(bad, ctx)))
      bad.place = function() return 1, 42 end
      assert.equals('policy "bad" returned a number reason, not a string', select(2, placement.run(bad, ctx)))
    end)
  end)
end)

describe("placement.least_loaded", function()
  local place = least_loaded.place

  it("chooses the fewest streams per slot", function()
    -- The C fallback's own case: 2/4 and 1/4 against 3/8.
    local ctx = placement.new_context {
      { slots = 4, inflight = 2 }, { slots = 4, inflight = 1 }, { slots = 8, inflight = 3 },
    }
    local idx, reason = place(ptr(ctx))
    assert.equals(2, idx)
    assert.equals("least loaded: ep1 at 1/4 streams", reason)
    ctx.cands[1].inflight = 2 -- 2/4 = 4/8 > 3/8
    assert.equals(3, (place(ptr(ctx))))
    ctx.cands[2].inflight = 4 -- 4/8 ties 2/4: the lowest id
    assert.equals(1, (place(ptr(ctx))))
  end)

  it("breaks ties by the lowest endpoint_id, not by position", function()
    local ctx = placement.new_context {
      { endpoint_id = 9, name = "h:9", slots = 2, inflight = 1 },
      { endpoint_id = 4, name = "h:4", slots = 4, inflight = 2 },
      { endpoint_id = 6, name = "h:6", slots = 8, inflight = 4 },
      { endpoint_id = 2, name = "h:2", slots = 1, inflight = 1 },
    }
    for _ = 1, 5 do
      local idx, reason = place(ctx)
      assert.equals(2, idx)
      assert.equals("least loaded: h:4 at 2/4 streams", reason)
    end
  end)

  it("avoids a tried candidate while others remain", function()
    local ctx = placement.new_context {
      { slots = 4, inflight = 0, tried = true }, { slots = 4, inflight = 3 }, { slots = 4, inflight = 2 },
    }
    assert.equals(3, (place(ctx)))
    ctx.cands[2].tried = 1
    assert.equals(2, (place(ctx)))
    -- Every candidate tried: all allowed again, and the reason says so.
    ctx.cands[1].tried = 1
    local idx, reason = place(ctx)
    assert.equals(1, idx)
    assert.equals("least loaded: ep0 at 0/4 streams (every candidate tried before)", reason)
  end)

  it("takes the only candidate, tried or not", function()
    local ctx = placement.new_context { { slots = 2, inflight = 5, name = "solo:1" } }
    assert.equals(1, (place(ctx)))
    ctx.cands[0].tried = 1
    local idx, reason = place(ctx)
    assert.equals(1, idx)
    assert.equals("least loaded: solo:1 at 5/2 streams (every candidate tried before)", reason)
  end)

  it("answers nil with a reason when there is no candidate", function()
    local idx, reason = place(placement.new_context {})
    assert.is_nil(idx)
    assert.equals("least loaded: no candidates", reason)
  end)

  it("agrees with a brute-force reference on random contexts", function()
    math.randomseed(11)
    for _ = 1, 500 do
      local n, cands = math.random(1, 12), {}
      local used = {}
      for i = 1, n do
        local id
        repeat id = math.random(0, 40) until not used[id]
        used[id] = true
        cands[i] = { endpoint_id = id, slots = math.random(1, 8), inflight = math.random(0, 10),
          tried = math.random() < 0.3 }
      end
      local ctx = placement.new_context(cands)
      local any_fresh = false
      for i = 1, n do any_fresh = any_fresh or not cands[i].tried end
      local want
      for i = 1, n do
        local c = cands[i]
        if not any_fresh or not c.tried then
          if not want then
            want = i
          else
            local w = cands[want]
            local a, b = c.inflight / c.slots, w.inflight / w.slots
            if a < b or (a == b and c.endpoint_id < w.endpoint_id) then want = i end
          end
        end
      end
      assert.equals(want, (place(ptr(ctx))))
    end
  end)
end)

describe("placement.p2c", function()
  local place = p2c.place

  after_each(function()
    assert(placement.configure(p2c, {}))
  end)

  local function sampled(cands, seed)
    return placement.new_context(cands, { seed = seed })
  end

  it("returns the same choice for the same seed", function()
    local cands = {}
    for i = 1, 10 do
      cands[i] = { name = "h:" .. i, slots = 4, inflight = i % 4, ewma_ttft_ms = 20 * i, ewma_itl_ms = 5 }
    end
    for seed = 0, 50 do
      local ctx = sampled(cands, seed)
      local i1, r1 = place(ptr(ctx))
      for _ = 1, 3 do
        local i2, r2 = place(ptr(sampled(cands, seed)))
        assert.equals(i1, i2)
        assert.equals(r1, r2)
      end
    end
  end)

  it("samples every candidate over many seeds and never picks the worse of its pair", function()
    local cands = {}
    for i = 1, 6 do cands[i] = { name = "h:" .. i, ewma_ttft_ms = 10 * i, ewma_itl_ms = 1 } end
    local seen, won = {}, {}
    for seed = 1, 600 do
      local idx, reason = place(sampled(cands, seed))
      local w, sw, l, sl = reason:match("^p2c: (%S+) %(score ([%d.]+)%) over (%S+) %(score ([%d.]+)%)$")
      assert.is_string(w, reason)
      assert.equals("h:" .. idx, w)
      assert.are_not.equal(w, l)
      assert.is_true(tonumber(sw) <= tonumber(sl))
      seen[w], seen[l], won[w] = true, true, true
    end
    for i = 1, 6 do assert.is_true(seen["h:" .. i]) end
    -- The worst candidate is sampled but never wins; the best always wins
    -- when sampled.
    assert.is_nil(won["h:6"])
    assert.is_true(won["h:1"])
  end)

  it("with two candidates, always takes the better one", function()
    local cands = {
      { name = "127.0.0.1:9001", slots = 4, inflight = 2, ewma_ttft_ms = 8, ewma_itl_ms = 0.125 },
      { name = "127.0.0.1:9002", slots = 4, inflight = 2, ewma_ttft_ms = 30, ewma_itl_ms = 0.25 },
    }
    for seed = 1, 20 do
      local idx, reason = place(sampled(cands, seed))
      assert.equals(1, idx)
      assert.equals("p2c: 127.0.0.1:9001 (score 19.5) over 127.0.0.1:9002 (score 58.5)", reason)
    end
  end)

  it("scores by latency, load and errors as documented", function()
    local c = placement.new_context({
      { slots = 4, inflight = 2, ewma_ttft_ms = 100, ewma_itl_ms = 10, error_rate = 0.25 },
    }).cands[0]
    -- (1 + 100 + 32 * 10) * (1 + 2/4) * (1 + 4 * 0.25)
    assert.equals(421 * 1.5 * 2, p2c.score(c))
    assert(placement.configure(p2c, { error_weight = 0, decode_tokens = 0, floor_ms = 0 }))
    assert.equals(100 * 1.5, p2c.score(c))
  end)

  it("explores a candidate with no samples yet", function()
    local cands = {
      { name = "old", ewma_ttft_ms = 40, ewma_itl_ms = 2 },
      { name = "new" }, -- no samples: optimistic
    }
    for seed = 1, 10 do
      local idx, reason = place(sampled(cands, seed))
      assert.equals(2, idx)
      assert.matches("^p2c: new %(score 1.0%) over old", reason)
    end
  end)

  it("penalizes errors by error_weight", function()
    local cands = {
      { endpoint_id = 1, name = "flaky", ewma_ttft_ms = 10, error_rate = 0.5 },
      { endpoint_id = 2, name = "steady", ewma_ttft_ms = 10 },
    }
    assert.equals(2, (place(sampled(cands, 3))))
    -- With no weight on errors the two tie, and the lower id wins.
    assert(placement.configure(p2c, { error_weight = 0 }))
    local idx, reason = place(sampled(cands, 3))
    assert.equals(1, idx)
    assert.equals("p2c: flaky (score 11.0) over steady (score 11.0)", reason)
  end)

  it("breaks equal scores by the lowest endpoint_id", function()
    local cands = {
      { endpoint_id = 8, name = "b" }, { endpoint_id = 3, name = "a" },
    }
    for seed = 1, 10 do assert.equals(2, (place(sampled(cands, seed)))) end
  end)

  it("avoids tried candidates while others remain", function()
    local cands = {
      { name = "best", ewma_ttft_ms = 1, tried = true },
      { name = "b", ewma_ttft_ms = 50 },
      { name = "c", ewma_ttft_ms = 60 },
      { name = "d", ewma_ttft_ms = 70 },
    }
    for seed = 1, 200 do
      local idx = place(sampled(cands, seed))
      assert.are_not.equal(1, idx)
    end
    -- One left untried: it is the choice.
    cands[2].tried, cands[3].tried = true, true
    for seed = 1, 20 do
      local idx, reason = place(sampled(cands, seed))
      assert.equals(4, idx)
      assert.equals("p2c: d (the only candidate not tried)", reason)
    end
    -- All tried: the draw is over all of them again.
    cands[4].tried = true
    local chose_best = false
    for seed = 1, 50 do
      local idx, reason = place(sampled(cands, seed))
      assert.matches("%(every candidate tried before%)$", reason)
      if idx == 1 then chose_best = true end
    end
    assert.is_true(chose_best)
  end)

  it("takes the only candidate, tried or not, and handles none", function()
    local ctx = placement.new_context { { name = "solo" } }
    local idx, reason = place(ctx)
    assert.equals(1, idx)
    assert.equals("p2c: solo (the only candidate)", reason)
    ctx.cands[0].tried = 1
    assert.equals(1, (place(ctx)))
    idx, reason = place(placement.new_context {})
    assert.is_nil(idx)
    assert.equals("p2c: no candidates", reason)
  end)

  it("takes any seed, including the largest", function()
    local cands = { {}, {}, {} }
    for _, seed in ipairs { 0, 1, 2 ^ 52, 0xffffffffffffffffULL, 0x8000000000000000ULL } do
      local idx = place(placement.new_context(cands, { seed = seed }))
      assert.is_true(idx >= 1 and idx <= 3)
    end
  end)
end)
