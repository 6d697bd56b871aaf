-- Specs for policies/placement/affinity.lua: a session sticks to one
-- endpoint across many requests whatever the load, its mapping expires
-- after ttl_ms (refreshed by use) on the dictionary's test clock, survives
-- a reload of the policy (and a renumbering of endpoint ids), and falls
-- back to least loaded, moving the session, when its endpoint is not among
-- the candidates or this request already failed on it.
local ffi = require "ffi"
local placement = require "sluice.placement"
local dict = require "sluice.dict"
local affinity = require "placement.affinity"

local POLICY_FILE = "policies/placement/affinity.lua"

-- Three endpoints, as the prefilter would hand them over.
local function cands(loads, ids)
  local out = {}
  for i = 1, #loads do
    out[i] = { endpoint_id = ids and ids[i] or i - 1, name = "127.0.0.1:900" .. i, slots = 4, inflight = loads[i] }
  end
  return out
end

local function place(mod, cs, req)
  local ctx = placement.new_context(cs, req)
  local idx, reason = placement.run(mod, ffi.cast("const sl_ffi_place_ctx_t *", ctx))
  assert(idx, reason)
  return ctx.cands[idx - 1] and placement.name(ctx.cands[idx - 1]), reason, idx
end

local function key(session, model)
  return affinity.key(model or "m", session)
end

describe("placement.affinity", function()
  before_each(function()
    dict.set_clock_for_tests(1000)
    dict.flush()
    assert(placement.configure(affinity, {}))
  end)

  after_each(function()
    dict.set_clock_for_tests(nil)
    dict.flush()
    assert(placement.configure(affinity, {}))
  end)

  it("is a valid policy with documented defaults", function()
    assert.is_true(placement.validate_policy(affinity))
    assert.same({ ttl_ms = 600000, refresh = true, per_model = true, spill_load = 0 },
      assert(placement.configure(affinity)))
    local cfg, err = placement.configure(affinity, { ttl_ms = 0 })
    assert.is_nil(cfg)
    assert.equals('policy "affinity": config key "ttl_ms" = 0 is outside [1, inf]', err)
  end)

  it("sends a request without a session to the least loaded", function()
    local name, reason = place(affinity, cands { 3, 1, 2 })
    assert.equals("127.0.0.1:9002", name)
    assert.equals("affinity: no session; least loaded: 127.0.0.1:9002 at 1/4 streams", reason)
    assert.equals(0, (dict.count()))
  end)

  it("sticks a new session to the least loaded and keeps it there under any load", function()
    local name, reason = place(affinity, cands { 3, 1, 2 }, { session = "abc" })
    assert.equals("127.0.0.1:9002", name)
    assert.equals("affinity: session abc new, sticks to 127.0.0.1:9002 at 1/4 streams", reason)
    assert.equals("127.0.0.1:9002", dict.get(key("abc")))
    assert.equals(600000, dict.ttl(key("abc")))
    -- 1000 more requests while the loads move: the sticky endpoint is
    -- often the busiest, and the session stays on it.
    for r = 1, 1000 do
      local loads = { r % 5, (r * 3) % 5 + 1, (r * 7) % 5 }
      name, reason = place(affinity, cands(loads), { session = "abc", seed = r })
      assert.equals("127.0.0.1:9002", name)
      assert.equals("affinity: session abc sticks to 127.0.0.1:9002", reason)
    end
    assert.equals(1, (dict.count()))
  end)

  it("keeps many sessions apart, each on its own endpoint", function()
    local loads = { 0, 0, 0 }
    local home = {}
    for s = 1, 30 do
      local name, _, idx = place(affinity, cands(loads), { session = "s" .. s })
      home[s] = name
      loads[idx] = loads[idx] + 1 -- the stream stays open
    end
    -- Least loaded spread the new sessions evenly.
    assert.same({ 10, 10, 10 }, loads)
    for round = 1, 5 do
      for s = 30, 1, -1 do
        local name = place(affinity, cands { round, 0, 2 * round }, { session = "s" .. s })
        assert.equals(home[s], name)
      end
    end
  end)

  it("expires a session after ttl_ms without use, refreshed by each use", function()
    assert(placement.configure(affinity, { ttl_ms = 1000 }))
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 0, 1, 1 }, { session = "x" })))
    -- Used every 900 ms: never expires, though another endpoint is idler.
    for t = 1, 10 do
      dict.set_clock_for_tests(1000 + 900 * t)
      assert.equals("127.0.0.1:9001", (place(affinity, cands { 3, 0, 1 }, { session = "x" })))
      assert.equals(1000, dict.ttl(key("x")))
    end
    -- 999 ms later it is still there; at 1000 ms it is gone.
    dict.set_clock_for_tests(1000 + 9000 + 999)
    assert.equals(1, dict.ttl(key("x")))
    dict.set_clock_for_tests(1000 + 9000 + 1000)
    assert.is_nil(dict.get(key("x")))
    local name, reason = place(affinity, cands { 3, 0, 1 }, { session = "x" })
    assert.equals("127.0.0.1:9002", name)
    assert.equals("affinity: session x new, sticks to 127.0.0.1:9002 at 0/4 streams", reason)
  end)

  it("with refresh off, lets the TTL run from when the session stuck", function()
    assert(placement.configure(affinity, { ttl_ms = 1000, refresh = false }))
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 0, 1, 1 }, { session = "x" })))
    dict.set_clock_for_tests(1500)
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 3, 0, 1 }, { session = "x" })))
    assert.equals(500, dict.ttl(key("x")))
    dict.set_clock_for_tests(2000)
    assert.equals("127.0.0.1:9002", (place(affinity, cands { 3, 0, 1 }, { session = "x" })))
  end)

  it("survives a reload: a fresh copy of the policy finds the mapping, even with ids renumbered", function()
    assert.equals("127.0.0.1:9003", (place(affinity, cands { 2, 1, 0 }, { session = "keep" })))
    -- A reload runs the file again in a new state: new module table, new
    -- upvalues, nothing carried over but the dictionary.
    package.loaded["placement.affinity"] = nil
    local reloaded = dofile(POLICY_FILE)
    assert.are_not.equal(affinity, reloaded)
    assert(placement.configure(reloaded, {}))
    dict.set_clock_for_tests(1000 + 599999)
    -- The configuration changed too: the endpoints come in another order
    -- with other ids.  The session follows the name.
    local cs = cands({ 0, 5, 9 }, { 7, 3, 1 })
    cs[1].name, cs[3].name = cs[3].name, cs[1].name -- 127.0.0.1:9003 is now first, idle
    cs[1].inflight, cs[3].inflight = 9, 0
    local name, reason = place(reloaded, cs, { session = "keep" })
    assert.equals("127.0.0.1:9003", name)
    assert.equals("affinity: session keep sticks to 127.0.0.1:9003", reason)
    package.loaded["placement.affinity"] = affinity
  end)

  it("moves the session when its endpoint is not among the candidates, and it stays moved", function()
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 0, 1, 2 }, { session = "m1" })))
    -- 9001 drains (or cools down, or is not ready): the prefilter drops it.
    local cs = cands { 0, 1, 2 }
    table.remove(cs, 1)
    local name, reason = place(affinity, cs, { session = "m1" })
    assert.equals("127.0.0.1:9002", name)
    assert.equals("affinity: session m1: sticky 127.0.0.1:9001 ineligible, moved to 127.0.0.1:9002 at 1/4 streams",
      reason)
    assert.equals("127.0.0.1:9002", dict.get(key("m1")))
    -- 9001 is back and idle: the session stays where it moved.
    for _ = 1, 10 do
      name, reason = place(affinity, cands { 0, 3, 2 }, { session = "m1" })
      assert.equals("127.0.0.1:9002", name)
      assert.equals("affinity: session m1 sticks to 127.0.0.1:9002", reason)
    end
  end)

  it("moves the session off an endpoint this request already failed on", function()
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 0, 1, 2 }, { session = "r" })))
    local cs = cands { 0, 2, 1 }
    cs[1].tried = true
    local name, reason = place(affinity, cs, { session = "r", attempt = 2 })
    assert.equals("127.0.0.1:9003", name)
    assert.equals("affinity: session r: sticky 127.0.0.1:9001 tried, moved to 127.0.0.1:9003 at 1/4 streams",
      reason)
    assert.equals("127.0.0.1:9003", dict.get(key("r")))
    -- The next request finds 9003.
    assert.equals("127.0.0.1:9003", (place(affinity, cands { 0, 0, 4 }, { session = "r" })))
  end)

  it("when every candidate was tried, goes back to the sticky endpoint", function()
    assert.equals("127.0.0.1:9002", (place(affinity, cands { 1, 0, 1 }, { session = "t" })))
    local cs = cands { 0, 3, 0 }
    for i = 1, 3 do cs[i].tried = true end
    local name, reason = place(affinity, cs, { session = "t", attempt = 4 })
    assert.equals("127.0.0.1:9002", name)
    assert.equals("affinity: session t sticks to 127.0.0.1:9002 (every candidate tried before)", reason)
  end)

  it("keeps a session per model, or one per session with per_model off", function()
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 0, 1, 1 }, { session = "s", model = "a" })))
    assert.equals("127.0.0.1:9002", (place(affinity, cands { 1, 0, 1 }, { session = "s", model = "b" })))
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 1, 0, 0 }, { session = "s", model = "a" })))
    assert.equals("127.0.0.1:9002", (place(affinity, cands { 0, 1, 0 }, { session = "s", model = "b" })))
    -- Keys cannot collide across model and session boundaries.
    assert.are_not.equal(affinity.key("a:b", "c"), affinity.key("a", "b:c"))
    assert(placement.configure(affinity, { per_model = false }))
    assert.equals("affinity:s", affinity.key("a", "s"))
    assert.equals("127.0.0.1:9003", (place(affinity, cands { 1, 1, 0 }, { session = "s", model = "a" })))
    assert.equals("127.0.0.1:9003", (place(affinity, cands { 0, 0, 2 }, { session = "s", model = "b" })))
  end)

  it("spills a request off a busy sticky endpoint without moving the session", function()
    assert(placement.configure(affinity, { spill_load = 1 }))
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 0, 1, 1 }, { session = "b" })))
    local name, reason = place(affinity, cands { 4, 2, 3 }, { session = "b" })
    assert.equals("127.0.0.1:9002", name)
    assert.equals("affinity: session b: sticky 127.0.0.1:9001 busy at 4/4 streams, spilled to 127.0.0.1:9002 at 2/4",
      reason)
    assert.equals("127.0.0.1:9001", dict.get(key("b")))
    -- Everyone as busy: stay.
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 4, 4, 5 }, { session = "b" })))
    assert.equals("127.0.0.1:9001", (place(affinity, cands { 3, 0, 0 }, { session = "b" })))
  end)

  it("handles one candidate and none", function()
    local name, reason = place(affinity, { { name = "solo:1", tried = true } }, { session = "o", attempt = 2 })
    assert.equals("solo:1", name)
    assert.equals("affinity: session o new, sticks to solo:1 at 0/1 streams (every candidate tried before)", reason)
    local idx, why = affinity.place(placement.new_context({}, { session = "o" }))
    assert.is_nil(idx)
    assert.equals("affinity: no candidates", why)
  end)

  it("is a pure function of the context and the dictionary", function()
    local cs = cands { 2, 2, 2 }
    local first = place(affinity, cs, { session = "d", seed = 1 })
    for seed = 2, 50 do
      assert.equals(first, (place(affinity, cs, { session = "d", seed = seed })))
    end
    -- Equal loads: the lowest endpoint_id, not the first position.
    dict.flush()
    assert.equals("127.0.0.1:9003", (place(affinity, cands({ 2, 2, 2 }, { 5, 4, 3 }), { session = "d" })))
  end)
end)
