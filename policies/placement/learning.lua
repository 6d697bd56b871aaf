-- learning: epsilon-greedy placement on latency estimates the policy keeps
-- itself, in the TTL dictionary.
--
-- Observing.  The relay smooths each endpoint's time to first token, time
-- between tokens and decode speed as streams end, and hands the current
-- values to every placement (ctx.cands[i].ewma_ttft_ms, ewma_itl_ms,
-- tokens_per_s).  Each place() call compares them with the values this
-- policy saw last for that endpoint; when they moved, a stream has ended
-- there since, and the policy folds the new values into its own estimates:
--
--   est = est + alpha * (observed - est)     (the first observation: est = observed)
--
-- for TTFT, ITL and tokens per second separately.  The estimates live in
-- the dictionary under "learning:<host:port>" (by name: endpoint ids can
-- change with a configuration reload), with a TTL of memory_ttl_ms renewed
-- on every write, so they survive policy reloads and registry rebuilds, and
-- an endpoint gone for that long is forgotten.  learning.estimate(name)
-- decodes one for `sluice attach` and specs.
--
-- Scoring.  Lower is better:
--
--   itl     = est_itl_ms, or 1000 / est_tokens_per_s when no ITL was seen
--   latency = est_ttft_ms + decode_tokens * itl
--   score   = (floor_ms + latency)
--             * (1 + inflight / slots)
--             * (1 + error_weight * error_rate)
--
-- the same shape as p2c's (error_rate is the relay's, read live).  An
-- endpoint never observed has latency 0, an optimistic score, so it gets
-- traffic and with it the observations that settle its estimate.
--
-- Choosing.  The draw is over the candidates this request has not tried
-- (all of them when every one was tried).  With probability epsilon, drawn
-- from ctx.seed (splitmix64's finalizer, top 53 bits as a uniform in
-- [0, 1)), the request explores: it goes to the candidate other than the
-- best that this policy sent traffic to least recently (ties to the lowest
-- endpoint_id), skipping candidates whose slots are all busy; otherwise
-- (and always on a retry, attempt > 1) it goes to the best score, ties to
-- the lowest endpoint_id.  "Least recently" counts placements: a counter in
-- the dictionary ("learning:clock") goes up once per place() call and the
-- chosen endpoint's estimate records its value.  Exploring in rotation
-- keeps every estimate fresh at a rate of about epsilon / (m - 1) of the
-- traffic each, so an endpoint that got faster is sampled, its estimate
-- falls toward its new latency, and once it scores best the traffic
-- follows.
--
-- Determinism: the choice is a pure function of the context and the
-- dictionary's contents; the same seed explores or not the same way.  The
-- call writes to the dictionary: the counter, the chosen endpoint's
-- estimate (its clock stamp), and the estimates that saw a new observation.
--
-- Written for the JIT: no closures, tables or cdata made per call.  The
-- estimates of one call sit in a scratch array made at load (8 doubles per
-- candidate) and travel to and from the dictionary as 64 raw bytes
-- (ffi.copy / ffi.string), never through text.  Allocations per call: a
-- key, a value read back and a value written per candidate, and the
-- reason.
local ffi = require "ffi"
local bit = require "bit"
local placement = require "sluice.placement" -- declares the context type
local any_untried = placement.any_untried
local dict = require "sluice.dict"

local bxor, rshift = bit.bxor, bit.rshift
local name_of = placement.name
local dict_get, dict_set, dict_incr = dict.get, dict.set, dict.incr
local ffi_copy, ffi_fill, ffi_string = ffi.copy, ffi.fill, ffi.string
local format, tonumber = string.format, tonumber
local MAX = placement.MAX_CANDIDATES

-- splitmix64's constants: a seed goes through its finalizer once.
local GOLDEN = 0x9E3779B97F4A7C15ULL
local MIX1 = 0xBF58476D1CE4E5B9ULL
local MIX2 = 0x94D049BB133111EBULL
local TWO_M53 = 2 ^ -53

local KEY_PREFIX = "learning:"
local CLOCK_KEY = "learning:clock"

-- One estimate: 8 doubles, stored as their 64 raw bytes.
local REC = 8
local RECBYTES = REC * 8
local EST_TTFT, EST_ITL, EST_TPS = 0, 1, 2     -- the policy's estimates
local SEEN_TTFT, SEEN_ITL, SEEN_TPS = 3, 4, 5  -- the relay's values seen last
local SAMPLES = 6                              -- observations folded in
local LAST = 7                                 -- clock when last chosen (0 = never)

local _M = {
  name = "learning",
  version = "1.0.0",
  schema = {
    epsilon = { type = "number", default = 0.05, min = 0, max = 1,
      doc = "share of first attempts that explore: go to the least recently used candidate other than the best" },
    alpha = { type = "number", default = 0.5, min = 0.01, max = 1,
      doc = "weight of a new observation in an estimate: est + alpha * (observed - est)" },
    decode_tokens = { type = "number", default = 32, min = 0,
      doc = "inter-token gaps counted in a stream's expected latency, after the first token" },
    floor_ms = { type = "number", default = 1, min = 0,
      doc = "latency added to every estimate; what a candidate never observed is assumed to cost" },
    error_weight = { type = "number", default = 4, min = 0,
      doc = "score multiplier per unit of error rate: score * (1 + error_weight * error_rate)" },
    memory_ttl_ms = { type = "integer", default = 3600000, min = 0,
      doc = "how long an endpoint's estimate is kept after its last update, in ms (0 = forever)" },
  },
}

-- The settings, as upvalues so place() reads no tables for them.
local epsilon = _M.schema.epsilon.default
local alpha = _M.schema.alpha.default
local decode_tokens = _M.schema.decode_tokens.default
local floor_ms = _M.schema.floor_ms.default
local error_weight = _M.schema.error_weight.default
local memory_ttl_ms = _M.schema.memory_ttl_ms.default

-- Called by the loader (placement.configure) with the schema defaults
-- merged with the operator's values.
function _M.configure(cfg)
  epsilon, alpha, decode_tokens = cfg.epsilon, cfg.alpha, cfg.decode_tokens
  floor_ms, error_weight, memory_ttl_ms = cfg.floor_ms, cfg.error_weight, cfg.memory_ttl_ms
end

-- Scratch, made once: the estimates of the candidates of one call, and
-- which of them changed.
local recs = ffi.new("double[?]", MAX * REC)
local dirty = ffi.new("uint8_t[?]", MAX)

-- Reads the estimate stored for key into rec; zeros when there is none (or
-- it has another size: another version's layout).
local function load(key, rec)
  local v = dict_get(key)
  if v and #v == RECBYTES then
    ffi_copy(rec, v, RECBYTES)
  else
    ffi_fill(rec, RECBYTES)
  end
end

local function blend(est, observed)
  if est == 0 then return observed end
  return est + alpha * (observed - est)
end

-- Folds the relay's current values for candidate c into rec; true when
-- they moved since last seen (a new observation).
local function observe(c, rec)
  local moved = false
  local t, l, s = c.ewma_ttft_ms, c.ewma_itl_ms, c.tokens_per_s
  if t > 0 and t ~= rec[SEEN_TTFT] then
    rec[EST_TTFT] = blend(rec[EST_TTFT], t)
    rec[SEEN_TTFT] = t
    moved = true
  end
  if l > 0 and l ~= rec[SEEN_ITL] then
    rec[EST_ITL] = blend(rec[EST_ITL], l)
    rec[SEEN_ITL] = l
    moved = true
  end
  if s > 0 and s ~= rec[SEEN_TPS] then
    rec[EST_TPS] = blend(rec[EST_TPS], s)
    rec[SEEN_TPS] = s
    moved = true
  end
  if moved then rec[SAMPLES] = rec[SAMPLES] + 1 end
  return moved
end

-- The estimated latency of a stream, in ms, from an estimate record.
local function latency(rec)
  local itl = rec[EST_ITL]
  if itl <= 0 then
    local tps = rec[EST_TPS]
    if tps > 0 then itl = 1000 / tps end
  end
  return rec[EST_TTFT] + decode_tokens * itl
end

-- The score of candidate c with estimate rec (lower is better).
local function score(c, rec)
  local slots = c.slots
  if slots < 1 then slots = 1 end
  return (floor_ms + latency(rec)) * (1 + c.inflight / slots) * (1 + error_weight * c.error_rate)
end

-- Returns the 1-based index of the chosen candidate and a reason
-- ("learning: 127.0.0.1:9001 (est 260.0 ms, score 261.0) over 127.0.0.1:9002
-- (score 601.0)", "learning: exploring ..."), or nil and a reason when there
-- is no candidate.
function _M.place(ctx)
  local n = ctx.n
  if n < 1 then return nil, "learning: no candidates" end
  local cands = ctx.cands
  local fresh = any_untried(ctx)
  local clock = dict_incr(CLOCK_KEY, 1, 0) or 0
  -- Observe every candidate; score the ones in the draw.
  local best, bscore, bid = -1, 0, 0
  local second, sscore, sid = -1, 0, 0
  local m = 0
  for i = 0, n - 1 do
    local c = cands[i]
    local rec = recs + i * REC
    load(KEY_PREFIX .. name_of(c), rec)
    dirty[i] = observe(c, rec) and 1 or 0
    if not fresh or c.tried == 0 then
      m = m + 1
      local sc, id = score(c, rec), c.endpoint_id
      if best < 0 or sc < bscore or (sc == bscore and id < bid) then
        second, sscore, sid = best, bscore, bid
        best, bscore, bid = i, sc, id
      elseif second < 0 or sc < sscore or (sc == sscore and id < sid) then
        second, sscore, sid = i, sc, id
      end
    end
  end
  -- Explore?  Only first attempts, only with someone to explore.
  local k = best
  if m > 1 and epsilon > 0 and ctx.attempt <= 1 then
    local z = ctx.seed + GOLDEN
    z = bxor(z, rshift(z, 30)) * MIX1
    z = bxor(z, rshift(z, 27)) * MIX2
    z = bxor(z, rshift(z, 31))
    if tonumber(rshift(z, 11)) * TWO_M53 < epsilon then
      local stale, sid2 = 0, 0
      for i = 0, n - 1 do
        local c = cands[i]
        if i ~= best and (not fresh or c.tried == 0) then
          local slots = c.slots
          if slots < 1 then slots = 1 end
          if c.inflight < slots then
            local last, id = recs[i * REC + LAST], c.endpoint_id
            if k == best or last < stale or (last == stale and id < sid2) then
              k, stale, sid2 = i, last, id
            end
          end
        end
      end
    end
  end
  -- Save: the chosen one's clock stamp, and every estimate that moved.
  local chosen = recs + k * REC
  local last_sent = chosen[LAST]
  chosen[LAST] = clock
  dirty[k] = 1
  local note = ""
  for i = 0, n - 1 do
    if dirty[i] == 1 then
      local ok, err = dict_set(KEY_PREFIX .. name_of(cands[i]), ffi_string(recs + i * REC, RECBYTES), memory_ttl_ms)
      if not ok then note = " (estimates not saved: " .. err .. ")" end
    end
  end
  local suffix = fresh and note or " (every candidate tried before)" .. note
  if k ~= best then
    local ago = last_sent > 0 and format("last sent %d placements ago", clock - last_sent) or "never sent"
    return k + 1, format("learning: exploring %s (est %.1f ms, %s); best %s (score %.1f)%s", name_of(cands[k]),
      latency(chosen), ago, name_of(cands[best]), bscore, suffix)
  end
  if second < 0 then
    return k + 1, format("learning: %s (est %.1f ms, score %.1f; the only candidate%s)", name_of(cands[k]),
      latency(chosen), bscore, n > 1 and " not tried" or "", suffix)
  end
  return k + 1, format("learning: %s (est %.1f ms, score %.1f) over %s (score %.1f)%s", name_of(cands[k]),
    latency(chosen), bscore, name_of(cands[second]), sscore, suffix)
end

-- The estimate kept for an endpoint name, as a table { ttft_ms, itl_ms,
-- tokens_per_s, latency_ms, samples, last_chosen }, or nil when there is
-- none.  For `sluice attach`, the REPL and specs; not for place().
function _M.estimate(name)
  local v = dict_get(KEY_PREFIX .. name)
  if not v or #v ~= RECBYTES then return nil end
  local rec = ffi.new("double[?]", REC)
  ffi_copy(rec, v, RECBYTES)
  return {
    ttft_ms = rec[EST_TTFT], itl_ms = rec[EST_ITL], tokens_per_s = rec[EST_TPS],
    latency_ms = latency(rec), samples = rec[SAMPLES], last_chosen = rec[LAST],
  }
end

-- Forgets the estimate kept for an endpoint name (true, or nil, "not
-- found"); for operators who know an endpoint changed.  The next placement
-- that sees it starts over from the relay's values.
function _M.forget(name)
  return dict.delete(KEY_PREFIX .. name)
end

return _M
