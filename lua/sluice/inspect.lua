-- sluice.inspect: a small pretty printer for Lua values, for `sluice repl`
-- and `sluice attach`.
--
--   inspect(v)                          --> a string
--   inspect(v, { depth = 4, width = 72, indent = "  " })
--   inspect.values(n, ...)              --> the n values, each inspected, joined by "\t"
--
-- Tables print as Lua constructors: the array part (1..n without holes)
-- first without keys, then the other keys sorted (numbers, then strings,
-- then booleans, then anything else by type name), identifiers bare and
-- everything else in brackets.  A table that fits `width` characters goes
-- on one line, a larger one gets one entry per line.  A table met again
-- while it is still being printed (a cycle) prints as <cycle>; past `depth`
-- levels a non-empty table prints as {...}.  Strings are quoted with the
-- escapes Lua reads back.  Boxed 64-bit integers print as LuaJIT writes
-- them (42LL, 42ULL); other cdata as <cdata<type>: address>; functions,
-- threads and userdata as <function: address> and so on.  Metatables are
-- not followed and __tostring is not called: what is printed is what is in
-- the table.
local ffi = require "ffi"

local type, tostring, tonumber, pairs, next, select = type, tostring, tonumber, pairs, next, select
local concat, sort = table.concat, table.sort
local format, rep, byte, gsub, find = string.format, string.rep, string.byte, string.gsub, string.find
local math_huge, floor = math.huge, math.floor
local rawget = rawget

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local istype = ffi.istype

local DEFAULTS = { depth = 6, width = 72, indent = "  " }

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  KEYWORDS[w] = true
end

local ESCAPES = {
  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
  ["\t"] = "\\t", ["\v"] = "\\v", ["\\"] = "\\\\", ['"'] = '\\"',
}

local function quote(s)
  -- Control bytes as \ddd (three digits, so a following digit is not read
  -- as part of the escape); bytes >= 0x80 stay as they are (UTF-8 text).
  return '"' .. gsub(s, '[%c\\"]', function(c)
    return ESCAPES[c] or format("\\%03d", byte(c))
  end) .. '"'
end

local function number(v)
  if v ~= v then return "0/0" end
  if v == math_huge then return "math.huge" end
  if v == -math_huge then return "-math.huge" end
  if v == floor(v) and v > -2^53 and v < 2^53 then return format("%d", v) end
  -- The shortest form that reads back as the same number.
  local s = format("%.14g", v)
  if tonumber(s) ~= v then s = format("%.17g", v) end
  return s
end

local function scalar(v)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" then return number(v) end
  if t == "nil" or t == "boolean" then return tostring(v) end
  if t == "cdata" then
    if istype(int64_t, v) or istype(uint64_t, v) then return tostring(v) end
    return "<" .. tostring(v) .. ">"
  end
  return "<" .. tostring(v) .. ">"
end

-- Key order: numbers (ascending), strings, booleans (false first), then
-- other types by their name and printed form.
local RANK = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    local ra, rb = RANK[ta] or 4, RANK[tb] or 4
    if ra ~= rb then return ra < rb end
    return ta < tb
  end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return (not a) and b end
  return tostring(a) < tostring(b)
end

local function key_text(k)
  if type(k) == "string" and find(k, "^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  return "[" .. scalar(k) .. "]"
end

local render

local function render_table(t, opts, level, visiting)
  if visiting[t] then return "<cycle>" end
  if next(t) == nil then return "{}" end
  if level >= opts.depth then return "{...}" end
  visiting[t] = true
  local items = {}
  -- The array part: 1..n while the values are not nil.
  local n = 0
  while rawget(t, n + 1) ~= nil do
    n = n + 1
    items[n] = render(rawget(t, n), opts, level + 1, visiting)
  end
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == floor(k)) then
      keys[#keys + 1] = k
    end
  end
  sort(keys, key_less)
  for i = 1, #keys do
    local k = keys[i]
    items[#items + 1] = key_text(k) .. " = " .. render(rawget(t, k), opts, level + 1, visiting)
  end
  visiting[t] = nil
  -- One line when it fits and no item spans lines.
  local one = "{ " .. concat(items, ", ") .. " }"
  if #one + #opts.indent * level <= opts.width and not find(one, "\n", 1, true) then
    return one
  end
  local pad = rep(opts.indent, level + 1)
  return "{\n" .. pad .. concat(items, ",\n" .. pad) .. "\n" .. rep(opts.indent, level) .. "}"
end

function render(v, opts, level, visiting)
  if type(v) == "table" then return render_table(v, opts, level, visiting) end
  return scalar(v)
end

local _M = {}

-- Returns v printed readably (see above).  opts (optional): depth (levels
-- of tables shown, default 6), width (a table is put on one line when it
-- fits, default 72), indent (default two spaces).  Misuse raises.
function _M.inspect(v, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("inspect: options must be a table, got " .. type(opts), 2)
  end
  local o = DEFAULTS
  if opts then
    o = {
      depth = opts.depth or DEFAULTS.depth,
      width = opts.width or DEFAULTS.width,
      indent = opts.indent or DEFAULTS.indent,
    }
    if type(o.depth) ~= "number" or o.depth < 0 then error("inspect: depth must be a number >= 0", 2) end
    if type(o.width) ~= "number" then error("inspect: width must be a number", 2) end
    if type(o.indent) ~= "string" then error("inspect: indent must be a string", 2) end
  end
  return render(v, o, 0, {})
end

-- The n values (n counts trailing nils too), each inspected, joined by a
-- tab: what the REPL prints for an expression's results.  "" when n is 0.
function _M.values(n, ...)
  local out = {}
  for i = 1, n do
    out[i] = _M.inspect((select(i, ...)))
  end
  return concat(out, "\t")
end

return setmetatable(_M, { __call = function(_, v, opts) return _M.inspect(v, opts) end })
