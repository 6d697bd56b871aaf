-- p2c: power of two choices on EWMA latency.
--
-- Samples two distinct candidates with a PRNG seeded from ctx.seed (so the
-- choice is a pure function of the context: the same seed and the same
-- numbers give the same answer) and takes the one with the lower score:
--
--   latency = ewma_ttft_ms + decode_tokens * ewma_itl_ms
--   score   = (floor_ms + latency)
--             * (1 + inflight / slots)
--             * (1 + error_weight * error_rate)
--
-- latency estimates what a new stream waits for: its first token, then
-- decode_tokens inter-token gaps.  The load factor grows with the streams
-- already sharing the endpoint's slots, and the error factor makes a flaky
-- endpoint look slower (error_weight 4: a 25% error rate doubles the
-- score).  A candidate with no samples yet has latency 0, an optimistic
-- score (floor_ms times its load factor), so it gets traffic and with it
-- the samples that settle its estimate; its load factor still keeps a
-- crowd from piling onto it before the first sample arrives.
--
-- Candidates this request already failed on are left out of the draw while
-- any other remains.  Equal scores go to the lower endpoint_id.  Written for
-- the JIT: no closures, tables or cdata made per call (the 64-bit mixing
-- is cdata arithmetic the JIT keeps in registers); the reason string is
-- the only allocation.
local placement = require "sluice.placement" -- declares the context type
local bit = require "bit"

local bxor, rshift = bit.bxor, bit.rshift
local name_of = placement.name
local format, tonumber = string.format, tonumber

-- splitmix64's constants: a seed goes through its finalizer once.
local GOLDEN = 0x9E3779B97F4A7C15ULL
local MIX1 = 0xBF58476D1CE4E5B9ULL
local MIX2 = 0x94D049BB133111EBULL

local _M = {
  name = "p2c",
  version = "1.0.0",
  schema = {
    error_weight = { type = "number", default = 4, min = 0,
      doc = "score multiplier per unit of error rate: score * (1 + error_weight * error_rate)" },
    decode_tokens = { type = "number", default = 32, min = 0,
      doc = "inter-token gaps counted in a stream's expected latency, after the first token" },
    floor_ms = { type = "number", default = 1, min = 0,
      doc = "latency added to every estimate; what a candidate with no samples yet is assumed to cost" },
  },
}

-- The settings, as upvalues so place() reads no tables for them.
local error_weight = _M.schema.error_weight.default
local decode_tokens = _M.schema.decode_tokens.default
local floor_ms = _M.schema.floor_ms.default

-- Called by the loader (placement.configure) with the schema defaults
-- merged with the operator's values.
function _M.configure(cfg)
  error_weight, decode_tokens, floor_ms = cfg.error_weight, cfg.decode_tokens, cfg.floor_ms
end

-- The score of one candidate (lower is better); see the top of the file.
local function score(c)
  local slots = c.slots
  if slots < 1 then slots = 1 end
  local latency = c.ewma_ttft_ms + decode_tokens * c.ewma_itl_ms
  return (floor_ms + latency) * (1 + c.inflight / slots) * (1 + error_weight * c.error_rate)
end
_M.score = score

-- Returns the 1-based index of the better of two sampled candidates and a
-- reason ("p2c: 127.0.0.1:9001 (score 12.3) over 127.0.0.1:9002 (score
-- 40.1)"), or nil and a reason when there is no candidate.
function _M.place(ctx)
  local n = ctx.n
  if n < 1 then return nil, "p2c: no candidates" end
  local cands = ctx.cands
  local fresh = 0
  for i = 0, n - 1 do
    if cands[i].tried == 0 then fresh = fresh + 1 end
  end
  -- The draw is over the untried candidates, or over all when every one
  -- was tried.
  local m = fresh > 0 and fresh or n
  local suffix = fresh == 0 and " (every candidate tried before)" or ""
  if m == 1 then
    local k = 0
    if fresh == 1 then
      for i = 0, n - 1 do
        if cands[i].tried == 0 then
          k = i
          break
        end
      end
    end
    return k + 1, format("p2c: %s (the only candidate%s)", name_of(cands[k]), n > 1 and " not tried" or "")
  end
  local z = ctx.seed + GOLDEN
  z = bxor(z, rshift(z, 30)) * MIX1
  z = bxor(z, rshift(z, 27)) * MIX2
  z = bxor(z, rshift(z, 31))
  -- Two distinct ranks in [0, m): the low bits pick the first, the high
  -- bits an offset from it.
  local r1 = tonumber(z % m)
  local r2 = (r1 + 1 + tonumber(rshift(z, 32) % (m - 1))) % m
  local a, b = r1, r2
  if m < n then
    local rank = 0
    for i = 0, n - 1 do
      if cands[i].tried == 0 then
        if rank == r1 then a = i elseif rank == r2 then b = i end
        rank = rank + 1
      end
    end
  end
  local ca, cb = cands[a], cands[b]
  local sa, sb = score(ca), score(cb)
  if sb < sa or (sb == sa and cb.endpoint_id < ca.endpoint_id) then
    a, ca, cb, sa, sb = b, cb, ca, sb, sa
  end
  return a + 1, format("p2c: %s (score %.1f) over %s (score %.1f)%s", name_of(ca), sa, name_of(cb), sb, suffix)
end

return _M
