-- sluice.schema: the config schema every policy module declares, checked
-- one way for every phase (placement policies, limit rules).
--
--   schema.problems(s)                 -- { message, ... } for a schema table (sorted; {} when fine)
--   schema.build(s, overrides, label)  -- config (defaults + overrides) | nil, message
--
-- A schema is a table of config keys, each
--   { type = "number" | "integer" | "string" | "boolean", default = ...,
--     [min = n], [max = n], [values = { "a", "b", ... }], [doc = "..."] }
-- default is required and has the entry's type; min and max apply to
-- numbers; values (strings only) lists the accepted strings.  Messages name
-- the key, and build's start with label ('policy "p2c"').
local type, tostring, pairs, ipairs = type, tostring, pairs, ipairs
local concat, format, sort = table.concat, string.format, table.sort

local _M = {}

local TYPES = { number = true, integer = true, string = true, boolean = true }

local function article(t)
  return (t == "integer" and "an " or "a ") .. t
end

local function is_type(v, want)
  if want == "integer" then return type(v) == "number" and v % 1 == 0 end
  return type(v) == want
end

local function listed(values, v)
  for _, x in ipairs(values) do
    if x == v then return true end
  end
  return false
end

-- Checks one entry; returns nil or a message.
local function check_entry(key, e)
  if type(key) ~= "string" then
    return "schema keys must be strings, got " .. type(key)
  end
  if type(e) ~= "table" then
    return format('schema key "%s" must be a table { type = ..., default = ... }, got %s', key, type(e))
  end
  if not TYPES[e.type] then
    return format('schema key "%s" has type %s (want "number", "integer", "string" or "boolean")',
      key, e.type == nil and "nil" or format("%q", tostring(e.type)))
  end
  if e.default == nil then
    return format('schema key "%s" has no default', key)
  end
  if not is_type(e.default, e.type) then
    return format('schema key "%s": default must be %s, got %s', key, article(e.type), type(e.default))
  end
  for _, bound in ipairs { "min", "max" } do
    if e[bound] ~= nil and (type(e[bound]) ~= "number" or (e.type ~= "number" and e.type ~= "integer")) then
      return format('schema key "%s": %s applies to numbers only and must be a number', key, bound)
    end
  end
  if e.min ~= nil and e.default < e.min or e.max ~= nil and e.default > e.max then
    return format('schema key "%s": default %s is outside [%s, %s]', key, tostring(e.default),
      tostring(e.min or "-inf"), tostring(e.max or "inf"))
  end
  if e.values ~= nil then
    if e.type ~= "string" or type(e.values) ~= "table" or #e.values == 0 then
      return format('schema key "%s": values applies to strings only and must be a list of strings', key)
    end
    for _, v in ipairs(e.values) do
      if type(v) ~= "string" then
        return format('schema key "%s": values must be strings, got %s', key, type(v))
      end
    end
    if not listed(e.values, e.default) then
      return format('schema key "%s": default "%s" is not one of %s', key, e.default, concat(e.values, ", "))
    end
  end
  return nil
end

-- The problems of schema s, one message per bad entry, sorted (pairs()
-- order is not stable; messages are).  {} when every entry is fine.
function _M.problems(s)
  local bad = {}
  for k, e in pairs(s) do
    local msg = check_entry(k, e)
    if msg then bad[#bad + 1] = msg end
  end
  sort(bad)
  return bad
end

-- Builds a config from schema s (which must have no problems): every
-- default, overridden by the operator's values, each checked against its
-- entry.  Returns the config table, or nil and "label: message" naming the
-- key.  overrides may be nil.
function _M.build(s, overrides, label)
  if overrides ~= nil and type(overrides) ~= "table" then
    return nil, format("%s: config must be a table, got %s", label, type(overrides))
  end
  local cfg = {}
  for k, e in pairs(s) do cfg[k] = e.default end
  for k, v in pairs(overrides or {}) do
    local e = s[k]
    if e == nil then
      return nil, format('%s: unknown config key "%s"', label, tostring(k))
    end
    if not is_type(v, e.type) then
      return nil, format('%s: config key "%s" must be %s, got %s', label, k, article(e.type), type(v))
    end
    if e.min ~= nil and v < e.min or e.max ~= nil and v > e.max then
      return nil, format('%s: config key "%s" = %s is outside [%s, %s]', label, k, tostring(v),
        tostring(e.min or "-inf"), tostring(e.max or "inf"))
    end
    if e.values ~= nil and not listed(e.values, v) then
      return nil, format('%s: config key "%s" = "%s" is not one of %s', label, k, v, concat(e.values, ", "))
    end
    cfg[k] = v
  end
  return cfg
end

return _M
