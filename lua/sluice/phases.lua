-- sluice.phases: the loader of a generation's policy files.
--
-- runtime/lua/generation.c describes every Lua phase (placement, narration,
-- ...) by a descriptor: its name, the function a policy module defines for
-- it (the entry), the Lua module that wraps that function (the wrapper),
-- and whether a module may leave the function out.  To load a policy file
-- it calls, under the load budget,
--
--   phases.load(path, config, specs)  -> bound, name, version
--
-- with specs the descriptors of the phases that file defines, as an array
-- of { name = "placement", entry = "place", wrapper = "sluice.placement",
-- optional = false }.  The file is run once; then, for each spec,
--
--   * an optional phase whose entry the module does not define is skipped:
--     bound[i] is false and the phase stays off;
--   * otherwise wrapper.bind(mod, entry, path, config) checks the module
--     (raising "path: what is wrong"), configures it, and returns the
--     function C calls for the phase: it takes the phase's argument (a light
--     userdata: C cannot make cdata) and answers an integer or nil and a
--     string or nil.  A spec without a wrapper gets phases.bind, which calls
--     the entry with the argument as it is.
--
-- name and version are the module's own (nil when it has none).  Errors keep
-- Lua's "file:line: message".  Nothing here runs per request: C keeps the
-- bound functions (registry refs) and calls them through the budget runner
-- (runtime/lua/lua_budget.c).
local type, ipairs, pcall, error, require, loadfile = type, ipairs, pcall, error, require, loadfile

local _M = {}

-- The wrapper of a phase that needs no adaptation: the entry gets C's
-- argument unchanged and answers the integer and text C reads.
function _M.bind(mod, entry, path)
  local fn = mod[entry]
  if type(fn) ~= "function" then
    error(path .. ': "' .. entry .. '" must be a function, got ' .. type(fn), 0)
  end
  return function(p) return fn(p) end
end

-- Runs the policy file at path and returns what it returns.
local function run_file(path)
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  local ok, mod = pcall(chunk)
  if not ok then error(mod, 0) end
  return mod
end

function _M.load(path, config, specs)
  local mod = run_file(path)
  local is_table = type(mod) == "table"
  local bound = {}
  for i, spec in ipairs(specs) do
    if spec.optional and (not is_table or mod[spec.entry] == nil) then
      bound[i] = false
    else
      local wrapper = spec.wrapper and require(spec.wrapper) or _M
      bound[i] = wrapper.bind(mod, spec.entry, path, config)
    end
  end
  if not is_table then
    -- Only optional phases were asked for, and a module that is not a table
    -- defines none of them: still a mistake worth naming.
    error(path .. ": a policy module must return a table, got " .. type(mod), 0)
  end
  local name, version = mod.name, mod.version
  return bound, type(name) == "string" and name or nil, type(version) == "string" and version or nil
end

return _M
