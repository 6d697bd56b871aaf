-- Specs for lua/sluice/ltl.lua: compile errors with columns, the canonical
-- text (and that it parses back, however long), monitors and offline
-- evaluation agreeing on random traces, the compile limits and their
-- messages, the fuzz regressions in tests/fuzz/regress/ltl/, misuse.
local ltl = require "sluice.ltl"

describe("sluice.ltl", function()
  it("compiles and prints the canonical form", function()
    local f = assert(ltl.compile("G(req -> F ack) && Xw p"))
    assert.equals("G (req -> F ack) && N p", f:tostring())
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

  it("refuses a monitor over too many propositions", function()
    local parts = {}
    for i = 1, 17 do parts[i] = "F p" .. i end
    local f, err = ltl.compile(table.concat(parts, " && "))
    assert.is_nil(f)
    assert.equals("a monitor takes at most 16 propositions (SL_LTL_MAX_MONITOR_PROPS)", err)
  end)

  it("prints long chains flat, and the text parses back", function()
    local parts = {}
    for i = 0, 1000 do parts[#parts + 1] = "p" .. (i % 16) end
    local src = table.concat(parts, " && ")
    local f = assert(ltl.compile(src))
    assert.equals(src, f:tostring())
    local g = assert(ltl.compile(f:tostring()))
    assert.equals(src, g:tostring())
    f = assert(ltl.compile("a && (b && c) || (d -> e) -> f U (g R h)"))
    assert.equals("a && (b && c) || (d -> e) -> f U g R h", f:tostring())
  end)

  it("refuses a compilation past its work budget, naming it", function()
    local src = "G (req -> (!done U ack)) && F done"
    local f = assert(ltl.compile(src))
    local need = f:work()
    assert.is_true(need > 0)
    assert.is_truthy(ltl.compile(src, { max_work = need }))
    local g, err = ltl.compile(src, { max_work = need - 1 })
    assert.is_nil(g)
    assert.equals(("compile work budget exceeded (max_work = %d)"):format(need - 1), err)
    -- The budget bounds work that the state limit lets through (the C
    -- test runs this one to the default budget).
    local counter = "F (a && " .. ("X "):rep(22) .. "b)"
    g, err = ltl.compile(counter, { max_states = 4000000, max_work = 200000 })
    assert.is_nil(g)
    assert.equals("compile work budget exceeded (max_work = 200000)", err)
    g, err = ltl.compile("F (a && " .. ("X "):rep(16) .. "b)")
    assert.equals("automaton exceeds max_states (65536)", err)
    -- A number is max_states, as before.
    g, err = ltl.compile("F (p && X (p && X (p && X p)))", 3)
    assert.is_nil(g)
    assert.equals("automaton exceeds max_states (3)", err)
  end)

  it("compiles the fuzz regressions, or refuses them clearly", function()
    local compiled = 0
    for i = 1, 4 do
      local path = ("tests/fuzz/regress/ltl/ltl-slow-compile-%d.txt"):format(i)
      local fh = assert(io.open(path, "rb"))
      local text = fh:read("*a")
      fh:close()
      local texts = { text }
      if text:find("\0", 1, true) then texts[2] = text:sub(1, text:find("\0", 1, true) - 1) end
      for _, src in ipairs(texts) do
        local f, err = ltl.compile(src)
        if f then
          compiled = compiled + 1
          assert.is_true(f:work() <= ltl.DEFAULT_MAX_WORK)
          assert.equals(f:tostring(), assert(ltl.compile(f:tostring())):tostring())
          local nprops = #f:props()
          math.randomseed(i)
          for _ = 1, 50 do
            local trace = {}
            for k = 1, math.random(0, 10) do
              trace[k] = math.random(0, 1) == 1 and 2 ^ nprops - 1 or math.random(0, 2 ^ nprops - 1)
            end
            local holds = f:eval(trace)
            local m = f:monitor()
            for k = 1, #trace do m:step(trace[k]) end
            assert.equals(holds and "satisfied" or "violated", m:final())
          end
        else
          assert.is_string(err)
          assert.is_truthy(err:find("^column %d+: ") or err:find("exceed"))
        end
      end
    end
    assert.equals(4, compiled)
  end)

  it("raises on misuse", function()
    assert.has_error(function() ltl.compile(42) end)
    local f = assert(ltl.compile("p"))
    assert.has_error(function() f:eval("p") end)
    assert.has_error(function() f:monitor():step(true) end)
    assert.has_error(function() ltl.compile("p", "many") end)
    assert.has_error(function() ltl.compile("p", { max_work = 0 }) end)
    assert.has_error(function() ltl.compile("p", { max_states = 1.5 }) end)
  end)
end)
