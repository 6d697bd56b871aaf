-- jit_trace: collects LuaJIT trace events for the JIT specs (test helper).
--
-- collect(fn) runs fn with a "trace" handler attached and returns the
-- traces completed (by start location) and the aborts, each formatted the
-- way jit.v prints it ("NYI: bytecode FNEW"); mentions(list, pattern) says
-- whether any entry matches.
local jit = require "jit"
local jutil = require "jit.util"
local vmdef = require "jit.vmdef"

local _M = {}

-- Formats a trace abort the way jit.v does.
local function abort_message(otr, oex)
  local msg = vmdef.traceerr[otr] or tostring(otr)
  if type(oex) == "function" then
    local fi = jutil.funcinfo(oex)
    oex = fi.loc or tostring(oex)
  end
  if oex ~= nil then
    local ok, s = pcall(string.format, msg, oex)
    if ok then msg = s end
  end
  -- "NYI: bytecode 51" -> "NYI: bytecode FNEW", as jit.dump names it.
  return (msg:gsub("bytecode (%d+)", function(op)
    op = tonumber(op)
    return "bytecode " .. vmdef.bcnames:sub(op * 6 + 1, op * 6 + 6):gsub("%s+$", "")
  end))
end

local function location(func, pc)
  local fi = jutil.funcinfo(func, pc)
  return fi.loc or (fi.source or "?")
end

-- Runs fn with a trace event handler attached; returns the traces started
-- (by number, with their start location), the ones completed, and aborts.
function _M.collect(fn)
  local started, stopped, aborts = {}, {}, {}
  local function on_trace(what, tr, func, pc, otr, oex)
    if what == "start" then
      started[tr] = location(func, pc)
    elseif what == "stop" then
      stopped[#stopped + 1] = started[tr] or "?"
    elseif what == "abort" then
      aborts[#aborts + 1] = (started[tr] or location(func, pc)) .. ": " .. abort_message(otr, oex)
    end
  end
  jit.flush()
  jit.attach(on_trace, "trace")
  local ok, err = pcall(fn)
  jit.attach(on_trace)
  assert(ok, err)
  return stopped, aborts
end


function _M.mentions(list, pattern)
  for _, s in ipairs(list) do
    if s:find(pattern) then return true end
  end
  return false
end

return _M
