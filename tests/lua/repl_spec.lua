-- Specs for lua/sluice/repl.lua, the core of `sluice repl` and attach
-- sessions: expression versus statement, incomplete chunks, error text
-- with a trimmed traceback, print capture and the globals.
local repl = require "sluice.repl"

describe("sluice.repl", function()
  it("prints the values of expressions and nothing for statements", function()
    assert.same({ "ok", "2" }, { repl.eval("1 + 1") })
    assert.same({ "ok", "2" }, { repl.eval("=1 + 1") })
    assert.same({ "ok", "" }, { repl.eval("repl_spec_x = 5") })
    assert.same({ "ok", "5" }, { repl.eval("repl_spec_x") })
    assert.same({ "ok", "1\tnil\t\"s\"" }, { repl.eval("1, nil, 's'") })
    assert.same({ "ok", "{ 1, 2 }" }, { repl.eval("{ 1, 2 } -- a trailing comment") })
    assert.same({ "ok", "3" }, { repl.eval("local a = 1\nreturn a + 2") })
    repl_spec_x = nil
  end)

  it("tells incomplete chunks from syntax errors", function()
    for _, src in ipairs { "function f()", "for i = 1, 2 do", "x = {", "{ 1,", "1 +", "f(1,", "x = [[long",
      "if x then", "=(1" } do
      local fn, err, incomplete = repl.compile(src, "=stdin")
      assert.is_nil(fn, src)
      assert.is_true(incomplete, src .. ": " .. tostring(err))
      assert.equals("more", (repl.eval(src)))
    end
    for _, src in ipairs { "x = = 1", "end", "1 2", "f(1,)", "local = 3" } do
      local fn, err, incomplete = repl.compile(src, "=stdin")
      assert.is_nil(fn, src)
      assert.is_false(incomplete, src)
      assert.matches("^stdin:1:", err)
      local status, text = repl.eval(src)
      assert.equals("error", status)
      assert.equals(err, text)
    end
    assert.same({ "ok", "6" }, { repl.eval("(function(n)\n  return n * 2\nend)(3)") })
  end)

  it("reports runtime errors with the chunk's line and a traceback without the REPL's frames", function()
    local status, text = repl.eval("error('boom')", "=stdin")
    assert.equals("error", status)
    assert.equals("stdin:1: boom\nstack traceback:\n\t[C]: in function 'error'\n\tstdin:1: in main chunk", text)
    status, text = repl.eval("local function inner() local x = nil; return x.y end\nreturn inner()", "=attach")
    assert.equals("error", status)
    assert.matches("^attach:1: attempt to index local 'x' %(a nil value%)\nstack traceback:\n", text)
    assert.is_nil(text:find("xpcall", 1, true))
    assert.is_nil(text:find("repl.lua", 1, true))
    status, text = repl.eval("error({ code = 7 })")
    assert.equals("error", status)
    assert.matches("^%(error object is a table value%) { code = 7 }", text)
    status, text = repl.eval("error(setmetatable({}, { __tostring = function() return 'custom' end }))")
    assert.matches("^custom\nstack traceback:", text)
  end)

  it("captures print() output before the values when asked", function()
    local saved = _G.print
    repl.capture_print()
    local ok, err = pcall(function()
      assert.same({ "ok", "a\t1\tnil\n\"r\"" }, { repl.eval("print('a', 1, nil) return 'r'") })
      assert.same({ "ok", "only\nprinted" }, { repl.eval("print('only') print('printed')") })
      assert.same({ "ok", "" }, { repl.eval("x_unused = 1") })
      local status, text = repl.eval("print('before') error('after', 0)")
      assert.equals("error", status)
      assert.matches("^before\nafter\nstack traceback:", text)
    end)
    _G.print = saved
    x_unused = nil
    assert(ok, err)
  end)

  it("installs inspect, placement and lazily loaded sluice modules", function()
    local env = repl.install_globals({})
    assert.equals(require "sluice.inspect", env.inspect)
    assert.equals(require "sluice.placement", env.placement)
    assert.equals(require "sluice.editdist", env.sluice.editdist)
    assert.has_error(function() return env.sluice.no_such_module end)
  end)
end)
