-- The placement hot loop of the affinity, weighted and learning policies
-- compiles: calling each place() many times records LuaJIT traces in its
-- file, and no trace aborts on something the JIT does not implement (NYI).
-- The loop drives every branch that runs per request: sessions that stick,
-- move (their endpoint dropped from the candidates) and start, retries,
-- full candidates, and relay estimates that change under the learner.
-- Other aborts (e.g. "leaving loop in root trace") are the JIT choosing
-- where traces start and end; they are listed on failure but do not fail
-- the spec.  Same method as placement_jit_spec.lua.
local ffi = require "ffi"
local jit = require "jit"
local placement = require "sluice.placement"
local dict = require "sluice.dict"
local affinity = require "placement.affinity"
local weighted = require "placement.weighted"
local learning = require "placement.learning"

local jit_trace = require "jit_trace"
local collect, mentions = jit_trace.collect, jit_trace.mentions

local function context()
  local cands = {}
  for i = 1, 16 do
    cands[i] = {
      endpoint_id = 100 - i, name = "10.0.0." .. i .. ":8080", slots = 2 + i % 5, inflight = i % 7,
      ewma_ttft_ms = i % 4 == 0 and 0 or 30 + 3 * i, ewma_itl_ms = i % 4 == 0 and 0 or 8 + i % 3,
      tokens_per_s = i % 4 == 0 and 0 or 100 + i, error_rate = (i % 6) / 30, tried = i == 5 or i == 11,
    }
  end
  return placement.new_context(cands, { seed = 1, model = "m", attempt = 1, session = "s0" })
end

local function report(stopped, aborts)
  return "aborts:\n  " .. table.concat(aborts, "\n  ") .. "\ntraces:\n  " .. table.concat(stopped, "\n  ")
end

describe("affinity, weighted and learning under the JIT", function()
  before_each(function()
    dict.set_clock_for_tests(1000)
    dict.flush()
    assert(placement.configure(affinity, {}))
    assert(placement.configure(weighted, { weights = "10.0.0.1:8080=5, 10.0.0.2:8080=0, 10.0.0.3:8080=2.5" }))
    assert(placement.configure(learning, {}))
  end)

  after_each(function()
    dict.set_clock_for_tests(nil)
    dict.flush()
    assert(placement.configure(weighted, {}))
  end)

  it("has the JIT on", function()
    assert.is_true((jit.status()))
  end)

  it("compiles the three policies without NYI aborts", function()
    local ctx = context()
    local p = ffi.cast("const sl_ffi_place_ctx_t *", ctx)
    -- The strings a context points to must stay alive: keep them here.
    local sessions = {}
    for s = 1, 64 do sessions[s] = "session-" .. s end
    local aff, wei, lrn = affinity.place, weighted.place, learning.place
    local stopped, aborts = collect(function()
      local sum = 0
      for i = 1, 30000 do
        ctx.seed = i
        ctx.session = sessions[i % 64 + 1]
        -- Now and then the prefilter drops the last four (sessions on
        -- them move), a retry comes through, and a relay estimate moves.
        ctx.n = i % 97 < 20 and 12 or 16
        ctx.attempt = i % 13 == 0 and 2 or 1
        local c = ctx.cands[i % 16]
        c.ewma_ttft_ms = 30 + (i * 7) % 50
        c.inflight = i % 5
        sum = sum + aff(p) + wei(p) + lrn(p)
      end
      assert(sum > 0)
    end)
    local text = report(stopped, aborts)
    assert.is_false(mentions(aborts, "NYI"), text)
    -- A policy's hottest loop may be the candidate scan it shares from
    -- sluice.placement: a trace there counts as the policy compiling.
    assert.is_true(mentions(stopped, "affinity%.lua") or mentions(stopped, "placement%.lua"), text)
    assert.is_true(mentions(stopped, "weighted%.lua"), text)
    assert.is_true(mentions(stopped, "learning%.lua"), text)
  end)

  it("compiles each policy alone over contexts of every size, sessions or none", function()
    local ctxs = {}
    for n = 1, 16 do
      local cands = {}
      for i = 1, n do
        cands[i] = { name = "h" .. i .. ":1", slots = 4, inflight = (i * 7) % 5, ewma_ttft_ms = 10 * i,
          ewma_itl_ms = i, tried = n > 2 and i == 2 }
      end
      ctxs[n] = placement.new_context(cands, { seed = n, session = n % 3 ~= 0 and "s" .. n or nil })
    end
    for _, policy in ipairs { affinity, weighted, learning } do
      local place = policy.place
      local stopped, aborts = collect(function()
        for i = 1, 20000 do
          local ctx = ctxs[i % 16 + 1]
          ctx.seed = i
          place(ctx)
        end
      end)
      local text = policy.name .. "\n" .. report(stopped, aborts)
      assert.is_false(mentions(aborts, "NYI"), text)
      assert.is_true(mentions(stopped, policy.name .. "%.lua") or mentions(stopped, "placement%.lua"), text)
    end
  end)
end)
