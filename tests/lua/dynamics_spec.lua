-- Specs for lua/sluice/dynamics.lua: the classification of known series,
-- the exponent of the logistic map, scale invariance, errors and misuse.
local dyn = require "sluice.dynamics"
local ffi = require "ffi"

local function logistic(n)
  local x, v = {}, 0.123456
  for _ = 1, 1000 do v = 4 * v * (1 - v) end
  for i = 1, n do x[i] = v; v = 4 * v * (1 - v) end
  return x
end

describe("sluice.dynamics", function()
  it("finds ln 2 for the logistic map", function()
    local r = assert(dyn.lyapunov(logistic(3000), { curve = true }))
    assert.is_true(math.abs(r.lambda - math.log(2)) <= 0.07)
    assert.equals(r.steps, #r.curve)
    assert.is_true(r.fit_hi > r.fit_lo)
    local c = assert(dyn.classify(logistic(3000)))
    assert.equals("chaotic", c.class)
  end)

  it("classifies sine, line, noise and constants", function()
    local sine, line, noise, const = {}, {}, {}, {}
    math.randomseed(3)
    for i = 1, 3000 do
      sine[i] = math.sin(0.17 * i)
      line[i] = 2 * i - 7
      noise[i] = math.random()
      const[i] = 5
    end
    assert.equals("periodic", dyn.classify(sine).class)
    assert.equals("trend", dyn.classify(line).class)
    assert.equals("noise", dyn.classify(noise).class)
    assert.equals("fixed_point", dyn.classify(const).class)
  end)

  it("does not care about scale and offset", function()
    local x = logistic(2000)
    local y = {}
    for i = 1, #x do y[i] = 1000 * x[i] - 250 end
    local a, b = dyn.lyapunov(x), dyn.lyapunov(y)
    assert.is_true(math.abs(a.lambda - b.lambda) < 1e-6)
    local ca, cb = dyn.corrdim(x), dyn.corrdim(y)
    assert.is_true(math.abs(ca.dim - cb.dim) < 1e-6)
  end)

  it("takes a double* cdata with a length and options", function()
    local n = 2000
    local buf = ffi.new("double[?]", n)
    local x = logistic(n)
    for i = 1, n do buf[i - 1] = x[i] end
    local r = assert(dyn.lyapunov(buf, n, { m = 2, tau = 1, search = dyn.SEARCH_BRUTE }))
    local s = assert(dyn.lyapunov(buf, n, { m = 2, tau = 1 }))
    assert.equals(r.lambda, s.lambda)
    assert.equals(2, s.m)
  end)

  it("returns nil, err for a short or broken series", function()
    local r, err = dyn.classify({ 1, 2, 3 })
    assert.is_nil(r)
    assert.equals("invalid argument", err)
    local x = logistic(200)
    x[10] = 0 / 0
    r, err = dyn.lyapunov(x)
    assert.is_nil(r)
    assert.equals("invalid argument", err)
  end)

  it("raises on misuse", function()
    assert.has_error(function() dyn.classify("abc") end)
    assert.has_error(function() dyn.classify({ 1, "x" }) end)
    assert.has_error(function() dyn.lyapunov(ffi.new("double[3]")) end)
    assert.has_error(function() dyn.corrdim(logistic(100), nil, 7) end)
  end)
end)
