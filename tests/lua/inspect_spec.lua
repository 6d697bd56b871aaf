-- Specs for lua/sluice/inspect.lua, the printer of `sluice repl` and
-- `sluice attach`: scalars and escapes, key order, one line versus one
-- entry per line, cycles, the depth limit, cdata with its type, and the
-- values() form the REPL prints results with.
local ffi = require "ffi"
local inspect = require "sluice.inspect"

describe("sluice.inspect", function()
  it("prints scalars as Lua reads them back", function()
    assert.equals("nil", inspect(nil))
    assert.equals("true", inspect(true))
    assert.equals("42", inspect(42))
    assert.equals("-7", inspect(-7))
    assert.equals("0.1", inspect(0.1))
    assert.equals("1e+300", inspect(1e300))
    assert.equals("math.huge", inspect(math.huge))
    assert.equals("-math.huge", inspect(-math.huge))
    assert.equals("0/0", inspect(0 / 0))
    assert.equals(1 / 3, tonumber(inspect(1 / 3))) -- exact round trip
    assert.equals('"plain"', inspect("plain"))
    assert.equals('"a\\nb\\t\\"q\\" \\\\"', inspect('a\nb\t"q" \\'))
    assert.equals('"\\0001"', inspect("\0" .. "1")) -- three digits: the 1 stays a 1
    assert.equals('"h\195\169"', inspect("h\195\169")) -- UTF-8 stays as it is
    for _, s in ipairs { "x\0y\r\n", "\1\2\127", "tab\tend" } do
      assert.equals(s, loadstring("return " .. inspect(s))())
    end
  end)

  it("prints the array part first, then the other keys sorted", function()
    assert.equals("{}", inspect({}))
    assert.equals("{ 1, 2, 3 }", inspect({ 1, 2, 3 }))
    assert.equals('{ 1, [3] = 3 }', inspect({ 1, nil, 3 }))
    assert.equals('{ "a", b = 2, c = 3 }', inspect({ c = 3, "a", b = 2 }))
    assert.equals('{ [2.5] = 4, x = 3, [false] = 2, [true] = 1 }',
      inspect({ [true] = 1, [false] = 2, x = 3, [2.5] = 4 }))
    -- strings sort by bytes, whatever their printed form: "_" < "a" < "e"
    assert.equals('{ [-1] = 0, [0] = 0, _ok = 3, ["a b"] = 1, ["end"] = 2 }',
      inspect({ ["a b"] = 1, ["end"] = 2, _ok = 3, [0] = 0, [-1] = 0 }))
  end)

  it("keeps short tables on one line and breaks long ones", function()
    assert.equals("{ a = { b = { c = 1 } } }", inspect({ a = { b = { c = 1 } } }))
    local t = { name = "a fairly long name", list = { 1, 2, 3, 4, 5, 6, 7, 8 }, flag = true,
      other = "more text here" }
    assert.equals(table.concat({
      "{",
      "  flag = true,",
      "  list = { 1, 2, 3, 4, 5, 6, 7, 8 },",
      '  name = "a fairly long name",',
      '  other = "more text here"',
      "}",
    }, "\n"), inspect(t))
    assert.equals("{\n    a = 1\n}", inspect({ a = 1 }, { width = 4, indent = "    " }))
  end)

  it("marks cycles and prints shared tables in full", function()
    local t = { name = "t" }
    t.self = t
    assert.equals('{ name = "t", self = <cycle> }', inspect(t))
    local a = { b = {} }
    a.b.back = a
    assert.equals("{ b = { back = <cycle> } }", inspect(a))
    local shared = { 1 }
    assert.equals("{ x = { 1 }, y = { 1 } }", inspect({ x = shared, y = shared }))
  end)

  it("stops at the depth limit", function()
    local deep = { l1 = { l2 = { l3 = { l4 = {} } } } }
    assert.equals("{ l1 = {...} }", inspect(deep, { depth = 1 }))
    assert.equals("{ l1 = { l2 = { l3 = {...} } } }", inspect(deep, { depth = 3 }))
    assert.equals("{ l1 = { l2 = { l3 = { l4 = {} } } } }", inspect(deep)) -- empty tables always show
    assert.equals("{...}", inspect({ 1 }, { depth = 0 }))
  end)

  it("shows cdata with its type and boxed integers as LuaJIT writes them", function()
    assert.equals("42LL", inspect(ffi.new("int64_t", 42)))
    assert.equals("42ULL", inspect(ffi.new("uint64_t", 42)))
    local p = ffi.new("struct { int a; }")
    assert.matches("^<cdata<struct %d+>: 0x%x+>$", inspect(p))
    assert.matches("^<cdata<int %*>: NULL>$", inspect(ffi.cast("int *", nil)))
    assert.matches("^{ c = <cdata<double %[2%]>: 0x%x+> }$", inspect({ c = ffi.new("double[2]") }))
  end)

  it("shows functions, threads and userdata by kind", function()
    assert.matches("^<function: [%w:# ]+>$", inspect(print))
    assert.matches("^<thread: 0x%x+>$", inspect(coroutine.create(function() end)))
    assert.matches("^<userdata: 0x%x+>$", inspect(newproxy()))
    assert.matches("^{ f = <function: 0x%x+> }$", inspect({ f = function() end }))
  end)

  it("does not follow metatables", function()
    local t = setmetatable({}, { __index = { hidden = 1 }, __tostring = function() return "X" end })
    assert.equals("{}", inspect(t))
  end)

  it("formats a list of results, trailing nils included", function()
    assert.equals("", inspect.values(0))
    assert.equals("1\tnil\tnil", inspect.values(3, 1, nil, nil))
    assert.equals('"a"\t{ 1 }', inspect.values(2, "a", { 1 }))
  end)

  it("refuses bad options", function()
    assert.has_error(function() inspect.inspect(1, "x") end, "inspect: options must be a table, got string")
    assert.has_error(function() inspect.inspect(1, { depth = -1 }) end, "inspect: depth must be a number >= 0")
  end)
end)
