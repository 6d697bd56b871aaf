-- weighted: seeded random choice in proportion to per-endpoint weights.
--
-- Each endpoint has a weight, set by name in the `weights` setting (a
-- string, "127.0.0.1:9001=1, 127.0.0.1:9002=3"), default_weight for names
-- not listed.  A request goes to candidate i with probability
--
--   w_i / sum of w_j over the candidates in the draw
--
-- drawn from ctx.seed: the seed goes through splitmix64's finalizer, its top
-- 53 bits make a uniform u in [0, 1), and the choice is the first candidate
-- (in context order) whose running sum of weights passes u * total.  The
-- choice is a pure function of the context, with no state at all, so it
-- survives reloads trivially and a captured context replays it; over many
-- requests the shares converge to the weights (seeds from the relay's
-- generator are uniform).  Smooth weighted round-robin (nginx) would be
-- exact over short runs, but it needs a running counter per endpoint, kept
-- in the dictionary and written on every request, and it drifts whenever
-- the candidate set changes; a seeded draw needs neither.
--
-- In the draw: the candidates this request has not tried (all of them when
-- every one was tried), and of those, when skip_full is on and any of them
-- has a free slot, only the ones with a free slot (inflight < slots).  When
-- every weight in the draw is 0, the draw is uniform over it.  A weight of 0
-- thus means "only when nothing else can take the request".
--
-- Written for the JIT: no closures, tables or cdata made per call; the
-- weights of the draw go into a scratch array made at load.  Looking a
-- weight up by name makes the name a Lua string (ffi.string) per candidate.
local ffi = require "ffi"
local bit = require "bit"
local placement = require "sluice.placement" -- declares the context type
local any_untried = placement.any_untried

local bxor, rshift = bit.bxor, bit.rshift
local name_of = placement.name
local ffi_string = ffi.string
local format, tonumber, type, error = string.format, tonumber, type, error
local MAX = placement.MAX_CANDIDATES

-- splitmix64's constants: a seed goes through its finalizer once.
local GOLDEN = 0x9E3779B97F4A7C15ULL
local MIX1 = 0xBF58476D1CE4E5B9ULL
local MIX2 = 0x94D049BB133111EBULL
local TWO_M53 = 2 ^ -53

local _M = {
  name = "weighted",
  version = "1.0.0",
  schema = {
    weights = { type = "string", default = "",
      doc = 'weight per endpoint name, "host:port=weight" separated by commas or spaces, '
        .. 'e.g. "10.0.0.5:8000=3, 10.0.0.6:8000=1"; weights are numbers >= 0' },
    default_weight = { type = "number", default = 1, min = 0,
      doc = "weight of an endpoint not named in weights" },
    skip_full = { type = "boolean", default = true,
      doc = "leave candidates with every slot busy out of the draw while another has a free slot" },
  },
}

-- The settings, as upvalues so place() reads no tables for them.
local weights = {} -- name -> weight
local default_weight = _M.schema.default_weight.default
local skip_full = _M.schema.skip_full.default

-- Scratch: the weight of each candidate in the draw (-1 = not in it).
local drawn = ffi.new("double[?]", MAX)

-- Parses a weights string ("name=weight" entries separated by commas or
-- white space; spaces around "=" are allowed) into a table name -> weight.  Returns the table,
-- or nil and a message naming the bad entry.
function _M.parse_weights(s)
  if type(s) ~= "string" then
    return nil, "weights must be a string, got " .. type(s)
  end
  local out = {}
  s = s:gsub("%s*=%s*", "=")
  for entry in s:gmatch("[^,%s]+") do
    local name, w = entry:match("^(.+)=([^=]*)$")
    local v = tonumber(w)
    if not name or not v or v < 0 or v ~= v or v == math.huge then
      return nil, format('bad entry "%s" (want host:port=weight, a number >= 0)', entry)
    end
    if out[name] then
      return nil, format('endpoint "%s" is listed twice', name)
    end
    out[name] = v
  end
  return out
end

-- Called by the loader (placement.configure) with the schema defaults
-- merged with the operator's values.  A malformed weights string raises,
-- which refuses the generation with the message.
function _M.configure(cfg)
  local w, err = _M.parse_weights(cfg.weights)
  if not w then
    error(format('policy "weighted": config key "weights": %s', err), 0)
  end
  weights, default_weight, skip_full = w, cfg.default_weight, cfg.skip_full
end

-- The weight an endpoint name gets under the current settings.
function _M.weight(name)
  local w = weights[name]
  if w == nil then return default_weight end
  return w
end

-- Returns the 1-based index of the drawn candidate and a reason
-- ("weighted: 127.0.0.1:9002 (weight 3 of 10)"), or nil and a reason when
-- there is no candidate.
function _M.place(ctx)
  local n = ctx.n
  if n < 1 then return nil, "weighted: no candidates" end
  local cands = ctx.cands
  local fresh = any_untried(ctx)
  -- Leave full candidates out only when one in the draw has a free slot.
  local only_free = false
  if skip_full then
    for i = 0, n - 1 do
      local c = cands[i]
      if not fresh or c.tried == 0 then
        local slots = c.slots
        if slots < 1 then slots = 1 end
        if c.inflight < slots then
          only_free = true
          break
        end
      end
    end
  end
  local total, m, full = 0, 0, 0
  for i = 0, n - 1 do
    local c = cands[i]
    local w = -1
    if not fresh or c.tried == 0 then
      local slots = c.slots
      if slots < 1 then slots = 1 end
      if only_free and c.inflight >= slots then
        full = full + 1
      else
        local p = c.name
        w = p ~= nil and weights[ffi_string(p)] or nil
        if w == nil then w = default_weight end
        total = total + w
        m = m + 1
      end
    end
    drawn[i] = w
  end
  local z = ctx.seed + GOLDEN
  z = bxor(z, rshift(z, 30)) * MIX1
  z = bxor(z, rshift(z, 27)) * MIX2
  z = bxor(z, rshift(z, 31))
  local k = -1
  if total > 0 then
    local r = tonumber(rshift(z, 11)) * TWO_M53 * total
    local acc = 0
    for i = 0, n - 1 do
      local w = drawn[i]
      if w > 0 then
        k = i -- the last positive weight, should rounding leave r past the sum
        acc = acc + w
        if r < acc then break end
      end
    end
  else
    -- Every weight in the draw is 0: uniform over it.
    local r = tonumber(z % m)
    for i = 0, n - 1 do
      if drawn[i] >= 0 then
        if r == 0 then
          k = i
          break
        end
        r = r - 1
      end
    end
  end
  local suffix = fresh and "" or " (every candidate tried before)"
  if full > 0 then suffix = format("%s, %d full passed over", suffix, full) end
  if total > 0 then
    return k + 1, format("weighted: %s (weight %g of %g)%s", name_of(cands[k]), drawn[k], total, suffix)
  end
  return k + 1, format("weighted: %s (every weight is 0: uniform)%s", name_of(cands[k]), suffix)
end

return _M
