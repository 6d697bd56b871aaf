-- affinity: session affinity over least loaded.
--
-- A request that carries a session (ctx.session, the client's x-session-id
-- header) goes to the endpoint its session went to before, so the engine's
-- prompt cache for that conversation is reused.  The mapping lives in the
-- TTL dictionary (sluice.dict), not in Lua, so it survives every reload:
--
--   key    "affinity:" .. #model .. ":" .. model .. ":" .. session   (per_model)
--          "affinity:" .. session                                     (otherwise)
--   value  the endpoint's name, "host:port"
--   ttl    ttl_ms, refreshed each time the session is placed (refresh)
--
-- The value is the endpoint's name, not its endpoint_id: ids are positions
-- in the registry and a configuration change can renumber them.  The model
-- is part of the key by default (its length first, so no model and session
-- pair can spell another's key), because a session's endpoint for one model
-- usually does not serve another.
--
-- The rule, for a request with a session:
--   1. the sticky endpoint is among the candidates and not tried by this
--      request (or every candidate was tried): take it, refresh the TTL;
--   2. it is there but carries spill_load or more streams per slot (when
--      spill_load > 0) and another candidate is less loaded: this request
--      goes to the least loaded of the others and the session stays;
--   3. it is not among the candidates (the prefilter dropped it: not ready,
--      draining, cooling down, no longer serving the model, or gone from the
--      configuration), or this request already failed on it: the least
--      loaded of the untried candidates, and the session moves there;
--   4. no mapping yet (new or expired session): least loaded, and the session
--      sticks there.
-- A request without a session goes to the least loaded candidate.  Least
-- loaded is the rule of placement/least_loaded.lua: fewest streams per slot,
-- untried candidates first, ties to the lowest endpoint_id.
--
-- Written for the JIT: no closures, tables or cdata made per call; names are
-- compared with strcmp, so the only allocations are the dictionary key, the
-- value read back, and the reason.
local ffi = require "ffi"
local placement = require "sluice.placement" -- declares the context type
local any_untried, placement_least_loaded = placement.any_untried, placement.least_loaded
local dict = require "sluice.dict"

pcall(ffi.cdef, "int strcmp(const char *a, const char *b);")
local strcmp = ffi.C.strcmp
local name_of = placement.name
local dict_get, dict_set = dict.get, dict.set
local ffi_string = ffi.string
local format = string.format

local _M = {
  name = "affinity",
  version = "1.0.0",
  schema = {
    ttl_ms = { type = "integer", default = 600000, min = 1,
      doc = "how long a session stays stuck to its endpoint after its last request, in ms" },
    refresh = { type = "boolean", default = true,
      doc = "restart a session's TTL each time it is placed (false: the TTL runs from when it stuck)" },
    per_model = { type = "boolean", default = true,
      doc = "keep a session's endpoint per requested model (false: one endpoint per session)" },
    spill_load = { type = "number", default = 0, min = 0,
      doc = "when > 0, a sticky endpoint at this many streams per slot or more is passed over for "
        .. "this request (the session stays); 0 = always stick" },
  },
}

-- The settings, as upvalues so place() reads no tables for them.
local ttl_ms = _M.schema.ttl_ms.default
local refresh = _M.schema.refresh.default
local per_model = _M.schema.per_model.default
local spill_load = _M.schema.spill_load.default

-- Called by the loader (placement.configure) with the schema defaults
-- merged with the operator's values.
function _M.configure(cfg)
  ttl_ms, refresh, per_model, spill_load = cfg.ttl_ms, cfg.refresh, cfg.per_model, cfg.spill_load
end

-- The dictionary key of a session (a Lua string) for a model (a Lua
-- string); exported for specs and `sluice attach`.
local function key_of(model, session)
  if per_model then
    return format("affinity:%d:%s:%s", #model, model, session)
  end
  return "affinity:" .. session
end
_M.key = key_of

-- The index (0-based) of the least loaded candidate, passing over tried
-- ones when fresh, and `skip` (a 0-based index, or -1); -1 when nothing
-- is left.  Ties go to the lowest endpoint_id.
local function least_loaded(ctx, fresh, skip)
  return (placement_least_loaded(ctx, fresh, skip))
end

-- Returns the 1-based index of the chosen candidate and a reason
-- ("affinity: session abc sticks to 127.0.0.1:9001"), or nil and a reason
-- when there is no candidate.  Writes the session's mapping to the
-- dictionary when it sticks, moves or is refreshed.
function _M.place(ctx)
  local n = ctx.n
  if n < 1 then return nil, "affinity: no candidates" end
  local cands = ctx.cands
  local fresh = any_untried(ctx)
  local all_tried = fresh and "" or " (every candidate tried before)"
  local psession = ctx.session
  if psession == nil then
    local k = least_loaded(ctx, fresh, -1)
    local c = cands[k]
    return k + 1, format("affinity: no session; least loaded: %s at %d/%d streams%s", name_of(c), c.inflight,
      c.slots, all_tried)
  end
  local session = ffi_string(psession)
  local key = key_of(per_model and ffi_string(ctx.model) or "", session)
  local want = dict_get(key) -- the sticky endpoint's name, or nil
  local sticky = -1
  if want then
    for i = 0, n - 1 do
      local p = cands[i].name
      if p ~= nil and strcmp(p, want) == 0 then
        sticky = i
        break
      end
    end
  end
  local why -- what happened to the sticky endpoint, when it was not taken
  if sticky >= 0 then
    local c = cands[sticky]
    if c.tried == 0 or not fresh then
      local slots = c.slots
      if slots < 1 then slots = 1 end
      if spill_load > 0 and c.inflight >= spill_load * slots then
        -- Busy: this request goes elsewhere when somewhere is less loaded;
        -- the session stays.
        local k = least_loaded(ctx, fresh, sticky)
        local o = k >= 0 and cands[k] or c
        local oslots = o.slots
        if oslots < 1 then oslots = 1 end
        if k >= 0 and o.inflight * slots < c.inflight * oslots then
          return k + 1, format("affinity: session %s: sticky %s busy at %d/%d streams, spilled to %s at %d/%d%s",
            session, want, c.inflight, c.slots, name_of(o), o.inflight, o.slots, all_tried)
        end
      end
      local note = ""
      if refresh then
        local ok, err = dict_set(key, want, ttl_ms)
        if not ok then note = " (ttl not refreshed: " .. err .. ")" end
      end
      return sticky + 1, format("affinity: session %s sticks to %s%s%s", session, want, all_tried, note)
    end
    why = "tried"
  elseif want then
    why = "ineligible"
  end
  local k = least_loaded(ctx, fresh, -1)
  local c = cands[k]
  local name = name_of(c)
  local ok, err = dict_set(key, name, ttl_ms)
  local note = ok and "" or " (not stuck: " .. err .. ")"
  if why then
    return k + 1, format("affinity: session %s: sticky %s %s, moved to %s at %d/%d streams%s%s", session, want,
      why, name, c.inflight, c.slots, all_tried, note)
  end
  return k + 1, format("affinity: session %s new, sticks to %s at %d/%d streams%s%s", session, name, c.inflight,
    c.slots, all_tried, note)
end

return _M
