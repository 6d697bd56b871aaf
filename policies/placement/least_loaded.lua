-- least_loaded: the default placement policy.
--
-- Chooses the candidate with the fewest streams in flight per slot.  A
-- candidate this request already failed on (a retry) is passed over while
-- any other remains; when every candidate was tried they are all allowed
-- again.  Ties go to the lowest endpoint_id, so the choice is a pure
-- function of the context: the same rule as the C fallback
-- (sl_placement_least_loaded in runtime/stream/placement.c), compared the same way,
-- without division (inflight_a * slots_b against inflight_b * slots_a).
--
-- Written for the JIT: no closures, tables or cdata made per call; the
-- reason string is the only allocation.
local placement = require "sluice.placement" -- declares the context type

local name_of = placement.name
local any_untried, least_loaded = placement.any_untried, placement.least_loaded
local format = string.format

local _M = {
  name = "least_loaded",
  version = "1.0.0",
  schema = {}, -- no settings
}

-- Returns the 1-based index of the least loaded candidate and a reason
-- ("least loaded: 127.0.0.1:9001 at 1/4 streams"), or nil and a reason
-- when there is no candidate.
function _M.place(ctx)
  if ctx.n < 1 then return nil, "least loaded: no candidates" end
  local fresh = any_untried(ctx)
  local best, bi, bs = least_loaded(ctx, fresh, -1)
  return best + 1, format("least loaded: %s at %d/%d streams%s", name_of(ctx.cands[best]), bi, bs,
    fresh and "" or " (every candidate tried before)")
end

return _M
