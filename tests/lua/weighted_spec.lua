-- Specs for policies/placement/weighted.lua: shares match the weights over
-- many draws with fixed seeds (1:3:6 over 10,000, each within 2 percentage
-- points), the same seed gives the same choice, weights come from the
-- `weights` string (malformed ones refuse the configuration), weight 0 and
-- default_weight, retries avoid tried candidates, and full candidates are
-- passed over while another has a free slot.
local ffi = require "ffi"
local bit = require "bit"
local placement = require "sluice.placement"
local weighted = require "placement.weighted"

local function ptr(ctx)
  return ffi.cast("const sl_ffi_place_ctx_t *", ctx)
end

local function eps(n, extra)
  local out = {}
  for i = 1, n do
    out[i] = { name = "127.0.0.1:900" .. i, slots = 4 }
    for k, v in pairs(extra and extra[i] or {}) do out[i][k] = v end
  end
  return out
end

-- Seeds as the relay makes them: xorshift64 from a fixed start.
local function relay_seeds(start)
  local x = ffi.new("uint64_t", start)
  return function()
    x = bit.bxor(x, bit.lshift(x, 13))
    x = bit.bxor(x, bit.rshift(x, 7))
    x = bit.bxor(x, bit.lshift(x, 17))
    return x
  end
end

-- Counts the choices over draws seeds (a function returning the next
-- seed) on one context; returns counts by 1-based index.
local function shares(ctx, draws, next_seed)
  local count = {}
  for i = 1, ctx.n do count[i] = 0 end
  local p = ptr(ctx)
  for d = 1, draws do
    ctx.seed = next_seed(d)
    local idx = weighted.place(p)
    count[idx] = count[idx] + 1
  end
  return count
end

local function assert_shares(count, want, draws, tol)
  local total = 0
  for _, w in ipairs(want) do total = total + w end
  for i, w in ipairs(want) do
    local got, expect = count[i] / draws, w / total
    assert.is_true(math.abs(got - expect) <= tol,
      string.format("endpoint %d: share %.4f, want %.4f +- %.2f", i, got, expect, tol))
  end
end

describe("placement.weighted", function()
  before_each(function()
    assert(placement.configure(weighted, {}))
  end)

  after_each(function()
    assert(placement.configure(weighted, {}))
  end)

  it("is a valid policy with documented defaults", function()
    assert.is_true(placement.validate_policy(weighted))
    assert.same({ weights = "", default_weight = 1, skip_full = true }, assert(placement.configure(weighted)))
  end)

  it("parses weights by name", function()
    assert.same({ ["127.0.0.1:9001"] = 1, ["127.0.0.1:9002"] = 3, ["[::1]:9003"] = 0.5 },
      weighted.parse_weights("127.0.0.1:9001=1, 127.0.0.1:9002 = 3\n[::1]:9003=0.5"))
    assert.same({}, weighted.parse_weights(""))
    assert.same({}, weighted.parse_weights(" , "))
    local w, err = weighted.parse_weights("a:1=x")
    assert.is_nil(w)
    assert.equals('bad entry "a:1=x" (want host:port=weight, a number >= 0)', err)
    assert.equals('bad entry "a:1=-2" (want host:port=weight, a number >= 0)', select(2, weighted.parse_weights("a:1=-2")))
    assert.equals('bad entry "a:1" (want host:port=weight, a number >= 0)', select(2, weighted.parse_weights("a:1")))
    assert.equals('bad entry "=3" (want host:port=weight, a number >= 0)', select(2, weighted.parse_weights("=3")))
    assert.equals('bad entry "a:1=inf" (want host:port=weight, a number >= 0)',
      select(2, weighted.parse_weights("a:1=inf")))
    assert.equals('endpoint "a:1" is listed twice', select(2, weighted.parse_weights("a:1=1,a:1=2")))
  end)

  it("refuses a configuration with malformed weights, keeping the old ones", function()
    assert(placement.configure(weighted, { weights = "127.0.0.1:9001=5" }))
    local ok, err = pcall(placement.configure, weighted, { weights = "127.0.0.1:9001=five" })
    assert.is_false(ok)
    assert.equals('policy "weighted": config key "weights": bad entry "127.0.0.1:9001=five" '
      .. '(want host:port=weight, a number >= 0)', err)
    assert.equals(5, weighted.weight("127.0.0.1:9001"))
    local cfg, err2 = placement.configure(weighted, { weights = { ["127.0.0.1:9001"] = 5 } })
    assert.is_nil(cfg)
    assert.equals('policy "weighted": config key "weights" must be a string, got table', err2)
  end)

  it("matches weights 1:3:6 within 2 points over 10,000 draws (consecutive seeds)", function()
    assert(placement.configure(weighted, { weights = "127.0.0.1:9001=1,127.0.0.1:9002=3,127.0.0.1:9003=6" }))
    local count = shares(placement.new_context(eps(3)), 10000, function(d) return d end)
    assert_shares(count, { 1, 3, 6 }, 10000, 0.02)
  end)

  it("matches weights 1:3:6 within 2 points over 10,000 draws (the relay's seeds)", function()
    assert(placement.configure(weighted, { weights = "127.0.0.1:9001=1,127.0.0.1:9002=3,127.0.0.1:9003=6" }))
    for _, start in ipairs { 1, 88172645463325252ULL, 0x9E3779B9 } do
      local count = shares(placement.new_context(eps(3)), 10000, relay_seeds(start))
      assert_shares(count, { 1, 3, 6 }, 10000, 0.02)
    end
  end)

  it("matches uneven weights with unlisted endpoints at default_weight", function()
    assert(placement.configure(weighted, {
      weights = "127.0.0.1:9002=2 127.0.0.1:9003=0.5 127.0.0.1:9005=6.5", default_weight = 1,
    }))
    local count = shares(placement.new_context(eps(5)), 20000, relay_seeds(7))
    assert_shares(count, { 1, 2, 0.5, 1, 6.5 }, 20000, 0.01)
    -- The position of a candidate does not matter, only its name.
    local reversed = eps(5)
    for i = 1, 2 do reversed[i], reversed[6 - i] = reversed[6 - i], reversed[i] end
    count = shares(placement.new_context(reversed), 20000, relay_seeds(7))
    assert_shares(count, { 6.5, 1, 0.5, 2, 1 }, 20000, 0.01)
  end)

  it("returns the same choice for the same seed", function()
    assert(placement.configure(weighted, { weights = "127.0.0.1:9001=1,127.0.0.1:9002=3,127.0.0.1:9003=6" }))
    for seed = 0, 200 do
      local i1, r1 = weighted.place(placement.new_context(eps(3), { seed = seed }))
      for _ = 1, 2 do
        local i2, r2 = weighted.place(placement.new_context(eps(3), { seed = seed }))
        assert.equals(i1, i2)
        assert.equals(r1, r2)
      end
    end
    local idx, reason = placement.run(weighted, placement.new_context(eps(3), { seed = 42 }))
    assert.matches("^weighted: 127%.0%.0%.1:900%d %(weight %d of 10%)$", reason)
    assert.equals("127.0.0.1:900" .. idx, reason:match("^weighted: (%S+)"))
  end)

  it("never draws weight 0 while another weight is positive; all 0 draws uniformly", function()
    assert(placement.configure(weighted, { weights = "127.0.0.1:9001=0, 127.0.0.1:9002=0" }))
    local count = shares(placement.new_context(eps(3)), 1000, function(d) return d end)
    assert.same({ 0, 0, 1000 }, count)
    assert(placement.configure(weighted, { default_weight = 0 }))
    count = shares(placement.new_context(eps(4)), 8000, relay_seeds(3))
    assert_shares(count, { 1, 1, 1, 1 }, 8000, 0.02)
    local _, reason = weighted.place(placement.new_context(eps(4), { seed = 5 }))
    assert.matches("^weighted: %S+ %(every weight is 0: uniform%)$", reason)
  end)

  it("leaves tried candidates out of the draw while others remain", function()
    assert(placement.configure(weighted, { weights = "127.0.0.1:9001=100" }))
    local ctx = placement.new_context(eps(3, { { tried = true } }), { attempt = 2 })
    local count = shares(ctx, 2000, function(d) return d end)
    assert.equals(0, count[1])
    assert_shares(count, { 0, 1, 1 }, 2000, 0.03)
    -- Every candidate tried: all in the draw again, and the reason says so.
    ctx.cands[1].tried, ctx.cands[2].tried = 1, 1
    count = shares(ctx, 2000, function(d) return d end)
    assert_shares(count, { 100, 1, 1 }, 2000, 0.02)
    local _, reason = weighted.place(ptr(ctx))
    assert.matches("%(every candidate tried before%)$", reason)
  end)

  it("passes over full candidates while one has a free slot", function()
    assert(placement.configure(weighted, { weights = "127.0.0.1:9001=8,127.0.0.1:9002=1,127.0.0.1:9003=1" }))
    local ctx = placement.new_context(eps(3, { { inflight = 4 } }))
    local count = shares(ctx, 2000, function(d) return d end)
    assert.equals(0, count[1])
    local _, reason = weighted.place(ptr(ctx))
    assert.matches("^weighted: 127%.0%.0%.1:900[23] %(weight 1 of 2%), 1 full passed over$", reason)
    -- Every candidate full: weights alone.
    ctx.cands[1].inflight, ctx.cands[2].inflight = 4, 5
    count = shares(ctx, 10000, function(d) return d end)
    assert_shares(count, { 8, 1, 1 }, 10000, 0.02)
    -- skip_full off: weights alone, busy or not.
    assert(placement.configure(weighted, { weights = "127.0.0.1:9001=8,127.0.0.1:9002=1,127.0.0.1:9003=1",
      skip_full = false }))
    ctx.cands[1].inflight, ctx.cands[2].inflight = 0, 0
    count = shares(ctx, 10000, function(d) return d end)
    assert_shares(count, { 8, 1, 1 }, 10000, 0.02)
  end)

  it("handles one candidate and none", function()
    local idx, reason = weighted.place(placement.new_context({ { name = "solo:1", tried = true } }, { seed = 9 }))
    assert.equals(1, idx)
    assert.equals("weighted: solo:1 (weight 1 of 1) (every candidate tried before)", reason)
    idx, reason = weighted.place(placement.new_context({}))
    assert.is_nil(idx)
    assert.equals("weighted: no candidates", reason)
  end)

  it("draws the extreme seeds inside the range", function()
    assert(placement.configure(weighted, { weights = "127.0.0.1:9001=1,127.0.0.1:9002=3,127.0.0.1:9003=6" }))
    for _, seed in ipairs { 0ULL, 1ULL, 0xffffffffffffffffULL, 0x8000000000000000ULL } do
      local idx = placement.run(weighted, placement.new_context(eps(3), { seed = seed }))
      assert.is_number(idx)
    end
  end)
end)
