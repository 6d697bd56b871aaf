-- Specs for policies/placement/learning.lua.  The main one is a simulated
-- world: endpoints whose true latencies the spec controls, a context whose
-- ewma fields the spec updates the way the relay does (runtime/stream/placement.c:
-- alpha 0.2, the first sample taken as is) for the endpoint the policy
-- chose, one stream at a time.  When one endpoint's latency drops, most of
-- the traffic (over 70% of 200 consecutive choices) must move to it within
-- 500 requests, for several seed streams.  Also: how observations fold into
-- the estimates, the exploration rate and its rotation, retries, the
-- estimates surviving a reload and expiring, and the n == 0 / 1 cases.
local ffi = require "ffi"
local bit = require "bit"
local placement = require "sluice.placement"
local dict = require "sluice.dict"
local learning = require "placement.learning"

local POLICY_FILE = "policies/placement/learning.lua"

local function ptr(ctx)
  return ffi.cast("const sl_ffi_place_ctx_t *", ctx)
end

-- xorshift64, as the relay makes its seeds.
local function seeds(start)
  local x = ffi.new("uint64_t", start)
  return function()
    x = bit.bxor(x, bit.lshift(x, 13))
    x = bit.bxor(x, bit.rshift(x, 7))
    x = bit.bxor(x, bit.lshift(x, 17))
    return x
  end
end

-- A simulated world: endpoints { name, ttft, itl } (true latencies, ms).
local World = {}
World.__index = World

local function world(endpoints, seed_start)
  local cands = {}
  for i, e in ipairs(endpoints) do cands[i] = { name = e.name, slots = 4 } end
  local w = setmetatable({
    eps = endpoints,
    ctx = placement.new_context(cands),
    next_seed = seeds(seed_start or 1),
    noise = tonumber((seed_start or 1) % 1000) + 1,
  }, World)
  w.p = ptr(w.ctx)
  return w
end

-- A deterministic factor in [0.9, 1.1): samples are not all alike.
function World:jitter()
  self.noise = (self.noise * 1103515245 + 12345) % 2147483648
  return 0.9 + 0.2 * self.noise / 2147483648
end

local function ewma(old, sample)
  if old == 0 then return sample end
  return old + 0.2 * (sample - old)
end

-- One request: place it, then end its stream on the chosen endpoint,
-- updating that candidate's fields as the relay would.  Returns the
-- 1-based index and the reason.
function World:request()
  self.ctx.seed = self.next_seed()
  local idx, reason = learning.place(self.p)
  assert(type(idx) == "number" and idx >= 1 and idx <= self.ctx.n, reason)
  local e, c = self.eps[idx], self.ctx.cands[idx - 1]
  local ttft, itl = e.ttft * self:jitter(), e.itl * self:jitter()
  c.ewma_ttft_ms = ewma(c.ewma_ttft_ms, ttft)
  c.ewma_itl_ms = ewma(c.ewma_itl_ms, itl)
  c.tokens_per_s = ewma(c.tokens_per_s, 1000 / itl)
  return idx, reason
end

local function eps3()
  return {
    { name = "10.0.0.1:8000", ttft = 100, itl = 5 },  -- 260 ms for 32 tokens
    { name = "10.0.0.2:8000", ttft = 400, itl = 10 }, -- 720 ms
    { name = "10.0.0.3:8000", ttft = 300, itl = 8 },  -- 556 ms
  }
end

describe("placement.learning", function()
  before_each(function()
    dict.set_clock_for_tests(1000)
    dict.flush()
    assert(placement.configure(learning, {}))
  end)

  after_each(function()
    dict.set_clock_for_tests(nil)
    dict.flush()
    assert(placement.configure(learning, {}))
  end)

  it("is a valid policy with documented defaults", function()
    assert.is_true(placement.validate_policy(learning))
    assert.same({ epsilon = 0.05, alpha = 0.5, decode_tokens = 32, floor_ms = 1, error_weight = 4,
      memory_ttl_ms = 3600000 }, assert(placement.configure(learning)))
    local cfg, err = placement.configure(learning, { epsilon = 1.5 })
    assert.is_nil(cfg)
    assert.equals('policy "learning": config key "epsilon" = 1.5 is outside [0, 1]', err)
  end)

  it("learns the fastest endpoint from a cold start and sends it most traffic", function()
    local w = world(eps3(), 5)
    for _ = 1, 300 do w:request() end
    local count = { 0, 0, 0 }
    for _ = 1, 1000 do
      local idx = w:request()
      count[idx] = count[idx] + 1
    end
    -- epsilon 0.05: about 95% exploit the best.
    assert.is_true(count[1] >= 930, table.concat(count, " "))
    assert.is_true(count[2] > 0 and count[3] > 0, table.concat(count, " ")) -- still explored
    local est = learning.estimate("10.0.0.1:8000")
    assert.is_true(math.abs(est.ttft_ms - 100) < 12, tostring(est.ttft_ms))
    assert.is_true(math.abs(est.itl_ms - 5) < 0.6, tostring(est.itl_ms))
    assert.is_true(math.abs(est.latency_ms - 260) < 30, tostring(est.latency_ms))
  end)

  it("moves most traffic to an endpoint that got faster within 500 requests", function()
    local report = {}
    for _, start in ipairs { 1, 2, 3, 42, 1234, 99991, 0x9E3779B9, 88172645463325252ULL } do
      dict.flush()
      local w = world(eps3(), start)
      for _ = 1, 500 do w:request() end
      -- Before: the slow endpoint gets exploration traffic only.
      local before = 0
      for _ = 1, 200 do
        if w:request() == 2 then before = before + 1 end
      end
      assert.is_true(before < 20, "before the drop: " .. before)
      -- 10.0.0.2 gets fast: 20 ms to first token, 2 ms a token (84 ms).
      w.eps[2].ttft, w.eps[2].itl = 20, 2
      local picks = {}
      for r = 1, 700 do picks[r] = w:request() end
      -- The first window of 200 choices with over 70% on it starts within
      -- the first 500 requests after the drop.
      local found
      for r = 1, 501 do
        local on = 0
        for j = r, r + 199 do
          if picks[j] == 2 then on = on + 1 end
        end
        if on > 140 then
          found = r
          break
        end
      end
      assert.is_number(found, "seed " .. tostring(start) .. ": no window of 200 with > 70% on the faster endpoint")
      local last = 0
      for j = 501, 700 do
        if picks[j] == 2 then last = last + 1 end
      end
      assert.is_true(last > 140, "seed " .. tostring(start) .. ": " .. last .. "/200 after 500 requests")
      report[#report + 1] = found
    end
    -- The rotation explores 10.0.0.2 about every 40 requests, and a handful
    -- of its samples bring its estimate under the old best's: the windows
    -- start 100 to 300 requests after the drop.
    for _, r in ipairs(report) do assert.is_true(r <= 500, table.concat(report, " ")) end
  end)

  it("moves traffic away from an endpoint that got slower", function()
    local w = world(eps3(), 17)
    for _ = 1, 300 do w:request() end
    w.eps[1].ttft, w.eps[1].itl = 900, 20 -- 1540 ms: now the worst
    for _ = 1, 100 do w:request() end
    local count = { 0, 0, 0 }
    for _ = 1, 200 do
      local idx = w:request()
      count[idx] = count[idx] + 1
    end
    assert.is_true(count[3] > 170, table.concat(count, " "))
  end)

  it("folds each new observation into its estimate with alpha", function()
    local ctx = placement.new_context({ { name = "a:1", ewma_ttft_ms = 100, ewma_itl_ms = 4, tokens_per_s = 250 } },
      { seed = 1 })
    learning.place(ptr(ctx))
    local e = learning.estimate("a:1")
    assert.same({ ttft_ms = 100, itl_ms = 4, tokens_per_s = 250, latency_ms = 100 + 32 * 4, samples = 1,
      last_chosen = 1 }, e)
    -- The relay's values unchanged: no new observation.
    learning.place(ptr(ctx))
    assert.equals(1, learning.estimate("a:1").samples)
    assert.equals(2, learning.estimate("a:1").last_chosen)
    -- They moved: halfway (alpha 0.5) toward them.
    ctx.cands[0].ewma_ttft_ms, ctx.cands[0].ewma_itl_ms = 200, 6
    learning.place(ptr(ctx))
    e = learning.estimate("a:1")
    assert.equals(150, e.ttft_ms)
    assert.equals(5, e.itl_ms)
    assert.equals(250, e.tokens_per_s)
    assert.equals(2, e.samples)
    assert(placement.configure(learning, { alpha = 1 }))
    ctx.cands[0].ewma_ttft_ms = 50
    learning.place(ptr(ctx))
    assert.equals(50, learning.estimate("a:1").ttft_ms)
    -- The relay lost its values (a registry rebuild): the estimate stays.
    ctx.cands[0].ewma_ttft_ms, ctx.cands[0].ewma_itl_ms, ctx.cands[0].tokens_per_s = 0, 0, 0
    learning.place(ptr(ctx))
    assert.equals(50, learning.estimate("a:1").ttft_ms)
    assert.equals(3, learning.estimate("a:1").samples)
  end)

  it("scores by latency, load and errors, with decode speed standing in for ITL", function()
    assert(placement.configure(learning, { epsilon = 0 }))
    local ctx = placement.new_context({
      { name = "a:1", endpoint_id = 1, ewma_ttft_ms = 100, ewma_itl_ms = 10 },           -- 421
      { name = "b:1", endpoint_id = 2, ewma_ttft_ms = 100, tokens_per_s = 125 },         -- 100 + 32 * 8 + 1 = 357
      { name = "c:1", endpoint_id = 3, ewma_ttft_ms = 50, ewma_itl_ms = 5, slots = 2, inflight = 2 }, -- 211 * 2
    }, { seed = 3 })
    local idx, reason = placement.run(learning, ctx)
    assert.equals(2, idx)
    assert.equals("learning: b:1 (est 356.0 ms, score 357.0) over a:1 (score 421.0)", reason)
    ctx.cands[1].error_rate = 0.25 -- 357 * 2
    idx, reason = placement.run(learning, ctx)
    assert.equals(1, idx)
    assert.equals("learning: a:1 (est 420.0 ms, score 421.0) over c:1 (score 422.0)", reason)
  end)

  it("explores about epsilon of first attempts, in rotation, and never on a retry", function()
    local ctx = placement.new_context({
      { name = "a:1", ewma_ttft_ms = 10 }, { name = "b:1", ewma_ttft_ms = 50 },
      { name = "c:1", ewma_ttft_ms = 60 }, { name = "d:1", ewma_ttft_ms = 70 },
    })
    local p = ptr(ctx)
    local next_seed = seeds(11)
    local explored, order = 0, {}
    for _ = 1, 10000 do
      ctx.seed = next_seed()
      local idx, reason = learning.place(p)
      if reason:find("^learning: exploring ") then
        explored = explored + 1
        assert.are_not.equal(1, idx)
        if #order < 9 then order[#order + 1] = idx end
      else
        assert.equals(1, idx)
      end
    end
    assert.is_true(math.abs(explored / 10000 - 0.05) < 0.01, tostring(explored))
    -- The least recently sent first, ties to the lowest id: b, c, d, b, ...
    assert.same({ 2, 3, 4, 2, 3, 4, 2, 3, 4 }, order)
    -- Retries exploit.
    ctx.attempt = 2
    for _ = 1, 2000 do
      ctx.seed = next_seed()
      assert.equals(1, (learning.place(p)))
    end
    -- epsilon 0: never.
    ctx.attempt = 1
    assert(placement.configure(learning, { epsilon = 0 }))
    for _ = 1, 2000 do
      ctx.seed = next_seed()
      assert.equals(1, (learning.place(p)))
    end
    -- epsilon 1: always, never to the best.
    assert(placement.configure(learning, { epsilon = 1 }))
    for _ = 1, 30 do
      ctx.seed = next_seed()
      local _, reason = learning.place(p)
      assert.matches("^learning: exploring [bcd]:1 %(est %d+%.0 ms, last sent %d+ placements ago%); best a:1 "
        .. "%(score 11%.0%)$", reason)
    end
  end)

  it("does not explore onto an endpoint with every slot busy", function()
    assert(placement.configure(learning, { epsilon = 1 }))
    local ctx = placement.new_context({
      { name = "a:1", ewma_ttft_ms = 10 }, { name = "b:1", ewma_ttft_ms = 50, slots = 2, inflight = 2 },
      { name = "c:1", ewma_ttft_ms = 60 },
    })
    for s = 1, 50 do
      ctx.seed = s
      assert.are_not.equal(2, (learning.place(ptr(ctx))))
    end
    ctx.cands[2].inflight = 1
    ctx.cands[2].slots = 1
    local idx, reason = learning.place(ptr(ctx))
    assert.equals(1, idx)
    assert.equals("learning: a:1 (est 10.0 ms, score 11.0) over b:1 (score 102.0)", reason)
  end)

  it("is deterministic for a seed and the dictionary's contents", function()
    local cands = {
      { name = "a:1", ewma_ttft_ms = 10 }, { name = "b:1", ewma_ttft_ms = 50 }, { name = "c:1", ewma_ttft_ms = 60 },
    }
    local function run()
      dict.flush()
      local out = {}
      local next_seed = seeds(5)
      local ctx = placement.new_context(cands)
      for i = 1, 500 do
        ctx.seed = next_seed()
        local idx, reason = learning.place(ptr(ctx))
        out[i] = idx .. " " .. reason
      end
      return out
    end
    assert.same(run(), run())
  end)

  it("avoids tried candidates while others remain", function()
    local ctx = placement.new_context({
      { name = "a:1", ewma_ttft_ms = 10, tried = true }, { name = "b:1", ewma_ttft_ms = 50 },
      { name = "c:1", ewma_ttft_ms = 60 },
    }, { attempt = 2 })
    for s = 1, 20 do
      ctx.seed = s
      assert.equals(2, (learning.place(ptr(ctx))))
    end
    ctx.cands[1].tried, ctx.cands[2].tried = 1, 1
    local idx, reason = learning.place(ptr(ctx))
    assert.equals(1, idx)
    assert.equals("learning: a:1 (est 10.0 ms, score 11.0) over b:1 (score 51.0) (every candidate tried before)",
      reason)
    ctx.cands[0].tried, ctx.cands[1].tried = 0, 0
    ctx.cands[0].tried = 1
    ctx.cands[1].tried = 1
    ctx.cands[2].tried = 0
    idx, reason = learning.place(ptr(ctx))
    assert.equals(3, idx)
    assert.equals("learning: c:1 (est 60.0 ms, score 61.0; the only candidate not tried)", reason)
  end)

  it("keeps its estimates across a reload and a registry rebuild", function()
    local w = world(eps3(), 9)
    for _ = 1, 300 do w:request() end
    local before = learning.estimate("10.0.0.1:8000")
    package.loaded["placement.learning"] = nil
    local reloaded = dofile(POLICY_FILE)
    assert.are_not.equal(learning, reloaded)
    assert(placement.configure(reloaded, { epsilon = 0 }))
    assert.same(before, reloaded.estimate("10.0.0.1:8000"))
    -- The registry was rebuilt too: new ids, other positions, and the
    -- relay's smoothed values start over at 0.  The fast endpoint is still
    -- known by name.
    local ctx = placement.new_context({
      { endpoint_id = 0, name = "10.0.0.3:8000" }, { endpoint_id = 1, name = "10.0.0.2:8000" },
      { endpoint_id = 2, name = "10.0.0.1:8000" },
    }, { seed = 4 })
    local idx, reason = placement.run(reloaded, ctx)
    assert.equals(3, idx, reason)
    assert.matches("^learning: 10%.0%.0%.1:8000 %(est %d+%.%d ms", reason)
    package.loaded["placement.learning"] = learning
  end)

  it("forgets an endpoint's estimate after memory_ttl_ms without updates", function()
    assert(placement.configure(learning, { memory_ttl_ms = 60000 }))
    local ctx = placement.new_context({ { name = "a:1", ewma_ttft_ms = 10 }, { name = "b:1", ewma_ttft_ms = 50 } },
      { seed = 1 })
    learning.place(ptr(ctx))
    assert.equals(60000, dict.ttl("learning:a:1"))
    dict.set_clock_for_tests(1000 + 59999)
    assert.is_table(learning.estimate("b:1"))
    dict.set_clock_for_tests(1000 + 60000)
    assert.is_nil(learning.estimate("b:1"))
    assert.is_true(learning.forget("a:1") == nil) -- already gone too
    -- The next placement starts over from the relay's values.
    learning.place(ptr(ctx))
    assert.equals(1, learning.estimate("b:1").samples)
  end)

  it("handles one candidate and none", function()
    local idx, reason = learning.place(placement.new_context({ { name = "solo:1" } }, { seed = 1 }))
    assert.equals(1, idx)
    assert.equals("learning: solo:1 (est 0.0 ms, score 1.0; the only candidate)", reason)
    idx, reason = learning.place(placement.new_context({}))
    assert.is_nil(idx)
    assert.equals("learning: no candidates", reason)
  end)
end)
