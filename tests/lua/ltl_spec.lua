-- Specs for lua/sluice/ltl.lua: compile errors with columns, the canonical
-- text, monitors and offline evaluation agreeing on random traces, misuse.
local ltl = require "sluice.ltl"

describe("sluice.ltl", function()
  it("compiles and prints the canonical form", function()
    local f = assert(ltl.compile("G(req -> F ack) && Xw p"))
    assert.equals("(G (req -> F ack) && N p)", f:tostring())
    assert.same({ "req", "ack", "p" }, f:props())
    assert.is_true(f:states() >= 1)
  end)

  it("reports parse errors with their column", function()
    local f, err = ltl.compile("G (p &&)")
    assert.is_nil(f)
    assert.equals("column 8: expected a formula", err)
    f, err = ltl.compile("p & q")
    assert.equals("column 3: expected '&&'", err)
    f, err = ltl.compile("(p || q")
    assert.equals("column 8: expected ')'", err)
  end)

  it("monitors a response property", function()
    local f = assert(ltl.compile("G (req -> F ack)"))
    local m = f:monitor()
    assert.equals("open", m:verdict())
    assert.equals("open", m:step{ "req" })
    assert.equals("violated", m:final())
    assert.equals("open", m:step{ ack = true })
    assert.equals("satisfied", m:final())
    assert.equals(2, m:steps())
    m:reset()
    assert.equals(0, m:steps())
  end)

  it("settles safety and guarantee verdicts for good", function()
    local f = assert(ltl.compile("G !err"))
    local m = f:monitor()
    assert.equals("open", m:step{})
    assert.equals("violated", m:step{ "err" })
    assert.equals("violated", m:step{})
    local holds, first = f:eval{ {}, {}, { "err" }, {} }
    assert.is_false(holds)
    assert.equals(3, first)
    holds, first = f:eval{}
    assert.is_true(holds)
    assert.is_nil(first)
    local g = assert(ltl.compile("F done"))
    assert.equals("satisfied", g:monitor():step{ "done" })
  end)

  it("agrees with eval on random traces", function()
    local formulas = { "G (a -> X b)", "a U (b || G c)", "F a && G (b -> N !a)", "(a R b) -> F c" }
    math.randomseed(7)
    for _, src in ipairs(formulas) do
      local f = assert(ltl.compile(src))
      for _ = 1, 200 do
        local n, trace = math.random(0, 20), {}
        for i = 1, n do trace[i] = math.random(0, 7) end
        local holds = f:eval(trace)
        local m = f:monitor()
        local decided
        for i = 1, n do
          local v = m:step(trace[i])
          if decided then assert.equals(decided, v) end
          if v ~= "open" then decided = v end
        end
        assert.equals(holds and "satisfied" or "violated", m:final())
      end
    end
  end)

  it("raises on misuse", function()
    assert.has_error(function() ltl.compile(42) end)
    local f = assert(ltl.compile("p"))
    assert.has_error(function() f:eval("p") end)
    assert.has_error(function() f:monitor():step(true) end)
  end)

  it("refuses a monitor over too many propositions", function()
    local parts = {}
    for i = 1, 17 do parts[i] = "F p" .. i end
    local f, err = ltl.compile(table.concat(parts, " && "))
    assert.is_nil(f)
    assert.equals("limit exceeded", err)
  end)
end)
