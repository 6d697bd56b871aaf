-- least_loaded: the default placement policy.
--
-- Chooses the candidate with the fewest streams in flight per slot.  A
-- candidate this request already failed on (a retry) is passed over while
-- any other remains; when every candidate was tried they are all allowed
-- again.  Ties go to the lowest endpoint_id, so the choice is a pure
-- function of the context: the same rule as the C fallback
-- (sl_placement_least_loaded in runtime/pool.c), compared the same way,
-- without division (inflight_a * slots_b against inflight_b * slots_a).
--
-- Written for the JIT: no closures, tables or cdata made per call; the
-- reason string is the only allocation.
local placement = require "sluice.placement" -- declares the context type

local name_of = placement.name
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
  local n = ctx.n
  if n < 1 then return nil, "least loaded: no candidates" end
  local cands = ctx.cands
  local fresh = false
  for i = 0, n - 1 do
    if cands[i].tried == 0 then
      fresh = true
      break
    end
  end
  local best, bi, bs, bid = -1, 0, 0, 0
  for i = 0, n - 1 do
    local c = cands[i]
    if not fresh or c.tried == 0 then
      local inflight, slots, id = c.inflight, c.slots, c.endpoint_id
      if best < 0 then
        best, bi, bs, bid = i, inflight, slots, id
      else
        -- int32 * int32 is exact in a double.
        local a, b = inflight * bs, bi * slots
        if a < b or (a == b and id < bid) then
          best, bi, bs, bid = i, inflight, slots, id
        end
      end
    end
  end
  return best + 1, format("least loaded: %s at %d/%d streams%s", name_of(cands[best]), bi, bs,
    fresh and "" or " (every candidate tried before)")
end

return _M
