-- sluice.admin: the helpers of a Lua session attached to the running daemon
-- (`sluice attach`, runtime/ops/attach.c).  They read the daemon's own state
-- when called, so every call shows the present; nothing is cached.
--
--   streams()        --> { { id, model, endpoint, pool, tokens, tokens_written, age_ms,
--                            ttft_ms, state, generation, attempts, stream, placement }, ... }
--                        oldest first
--   pools()          --> { { name, adapter, models, slots, context_tokens,
--                            endpoints, ready, streams }, ... }
--   endpoints()      --> { { name, id, pool, ready, draining, streams, slots,
--                            cooldown_ms, failures, requests, errors,
--                            ewma_ttft_ms, ewma_itl_ms, tokens_per_s,
--                            error_rate, idle_connections, sim, gaps_seen,
--                            dynamics = nil | { class, lambda, fit_r2, growth,
--                            fnn, recurrence, trend_r2, mean_gap_ms, samples,
--                            age_ms },
--                            managed = nil | { state, pid, uptime_s, restarts,
--                            last_exit } }, ... }
--   generations()    --> { current, live, built, freed, list = { { id, policy,
--                            version, path, current, streams, lua_bytes,
--                            lua_peak, lua_limit }, ... } }
--   counters()       --> { name = value, ... } (the process counters)
--   reload()         --> true, message | false, message
--   drain(name)      --> true, message | nil, "no endpoint ..."
--   undrain(name)    --> true, message | nil, "no endpoint ..."
--   help()           -- prints this list
--
-- name is an endpoint's "host:port" as endpoints() shows it, or its id.
-- The functions come from C (lua_CFunctions the session registers as
-- "sluice.admin_core"), so this module loads only inside the daemon.
local ok, core = pcall(require, "sluice.admin_core")
if not ok then
  error("sluice.admin works only inside the daemon, in a session of `sluice attach`", 2)
end

local type, error, sort = type, error, table.sort

local _M = {}

function _M.streams()
  local list = core.streams()
  -- The C list is newest first; show the oldest (longest running) first.
  sort(list, function(a, b)
    if a.age_ms ~= b.age_ms then return a.age_ms > b.age_ms end
    return a.id < b.id
  end)
  return list
end

function _M.pools() return core.pools() end

function _M.endpoints() return core.endpoints() end

function _M.generations() return core.generations() end

function _M.counters() return core.counters() end

function _M.reload() return core.reload() end

local function endpoint_arg(fname, name)
  if type(name) ~= "string" and type(name) ~= "number" then
    error(fname .. ': an endpoint name ("host:port") or id is required, got ' .. type(name), 3)
  end
end

function _M.drain(name)
  endpoint_arg("drain", name)
  return core.drain(name)
end

function _M.undrain(name)
  endpoint_arg("undrain", name)
  return core.undrain(name)
end

_M.HELP = [[
streams()        streams in flight: id, model, endpoint, tokens, age_ms, state, generation, ...
pools()          pools: name, models, endpoints, ready, streams
endpoints()      endpoints: name, ready, draining, streams, slots, cooldown_ms, ewma_ttft_ms, ...,
                 dynamics (timing verdict: class, lambda, samples, age_ms, ...),
                 managed (an engine sluice runs: state, pid, uptime_s, restarts, last_exit)
generations()    current generation, live ones with their streams, policy, Lua bytes
counters()       the process counters (as in GET /health)
reload()         build and validate a new generation: true, message | false, message
drain(name)      stop placing new streams on an endpoint ("host:port" or id)
undrain(name)    place streams on it again
inspect(v)       v printed readably, as a string
sluice.<module>  the sluice Lua modules (sluice.dict, sluice.editdist, ...)
A chunk may span lines; `=expr` prints a value.  Each chunk runs with the JIT
off and a budget of VM instructions; a chunk past it stops with an error.]]

-- print is looked up when called: an attach session captures it after
-- this module loaded.
function _M.help()
  _G.print(_M.HELP)
end

local NAMES = { "streams", "pools", "endpoints", "generations", "counters", "reload", "drain", "undrain", "help" }

-- Makes the helpers globals of env (default _G).
function _M.install(env)
  env = env or _G
  for i = 1, #NAMES do env[NAMES[i]] = _M[NAMES[i]] end
  return env
end

return _M
