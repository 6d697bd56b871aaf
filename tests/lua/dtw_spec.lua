-- Specs for lua/sluice/dtw.lua: distances against a plain DP written here,
-- lower bounds below the distance, the envelope, search against a scan,
-- the stream against the batch form, misuse.
local dtw = require "sluice.dtw"

local huge = math.huge

local function ref_dtw(a, b, band, sq)
  local na, nb = #a, #b
  if na == 0 or nb == 0 then return (na == nb) and 0 or huge end
  band = math.max(band or huge, math.abs(na - nb))
  local D = {}
  for i = 1, na do
    D[i] = {}
    for j = 1, nb do
      if math.abs(i - j) > band then
        D[i][j] = huge
      else
        local best
        if i == 1 and j == 1 then
          best = 0
        else
          best = huge
          if i > 1 and j > 1 then best = math.min(best, D[i - 1][j - 1]) end
          if i > 1 then best = math.min(best, D[i - 1][j]) end
          if j > 1 then best = math.min(best, D[i][j - 1]) end
        end
        local d = a[i] - b[j]
        D[i][j] = (sq and d * d or math.abs(d)) + best
      end
    end
  end
  return D[na][nb]
end

local function walk(n)
  local t, v = {}, 0
  for i = 1, n do v = v + math.random() - 0.5; t[i] = v end
  return t
end

describe("sluice.dtw", function()
  math.randomseed(11)

  it("matches the plain DP", function()
    for it = 1, 300 do
      local a, b = walk(math.random(1, 40)), walk(math.random(1, 40))
      local band = ({ 0, 2, 5, nil })[it % 4 + 1]
      local sq = it % 2 == 0
      local got = dtw.distance(a, b, { band = band, cost = sq and "squared" or "abs" })
      assert.equals(ref_dtw(a, b, band, sq), got)
    end
    assert.equals(0, dtw.distance({}, {}))
    assert.equals(huge, dtw.distance({ 1 }, {}))
  end)

  it("abandons at the limit", function()
    local a, b = walk(50), walk(50)
    local d = dtw.distance(a, b, { band = 5 })
    assert.equals(d, dtw.distance(a, b, { band = 5, abandon_at = d * 1.01 }))
    assert.equals(huge, dtw.distance(a, b, { band = 5, abandon_at = d * 0.99 }))
  end)

  it("bounds from below", function()
    for _ = 1, 100 do
      local n = math.random(1, 30)
      local a, b = walk(n), walk(n)
      local band = math.random(0, n)
      local d = ref_dtw(a, b, band, false)
      assert.is_true(dtw.lb_kim(a, b) <= d * (1 + 1e-12))
      local lo, up = dtw.envelope(a, band)
      assert.equals(n, #lo)
      for i = 1, n do
        assert.is_true(lo[i] <= a[i] and a[i] <= up[i])
      end
      assert.is_true(dtw.lb_keogh(b, lo, up) <= d * (1 + 1e-12))
    end
  end)

  it("searches like a scan of every window", function()
    for it = 1, 30 do
      local m = math.random(1, 20)
      local s, q = walk(math.random(m, 200)), walk(m)
      local band = math.random(0, m)
      local pos, dist, stats = dtw.search(q, s, { band = band, cost = "squared" })
      local best, bpos = huge, nil
      for k = 1, #s - m + 1 do
        local w = {}
        for i = 1, m do w[i] = s[k + i - 1] end
        local d = ref_dtw(q, w, band, true)
        if d < best then best, bpos = d, k end
      end
      assert.equals(bpos, pos)
      assert.equals(best, dist)
      assert.equals(#s - m + 1, stats.windows)
      assert.equals(stats.windows, stats.pruned_kim + stats.pruned_keogh + stats.pruned_keogh2
        + stats.abandoned + stats.computed)
    end
    local pos, dist = dtw.search({ 1, 2, 3 }, { 1 })
    assert.is_nil(pos)
    assert.equals(huge, dist)
  end)

  it("streams agree with the batch form after every sample", function()
    local q = walk(16)
    local st = assert(dtw.stream(q, { band = 3, threshold = 4 }))
    local xs, shown = walk(300), 0
    for i = 1, #xs do
      local d = st:push(xs[i])
      if i < #q then
        assert.equals(huge, d)
      else
        local w = {}
        for k = i - #q + 1, i do w[#w + 1] = xs[k] end
        local ref = ref_dtw(w, q, 3, false)
        if ref < 4 then
          assert.equals(ref, d)
          shown = shown + 1
        else
          assert.equals(huge, d)
        end
      end
    end
    st:reset()
    assert.equals(huge, st:push(1))
    assert.is_true(shown >= 0)
  end)

  it("rejects misuse", function()
    assert.has_error(function() dtw.distance({ 1 }, "x") end)
    assert.has_error(function() dtw.distance({ 1 }, { 2 }, { cost = "cubic" }) end)
    assert.has_error(function() dtw.distance({ 1 }, { 2 }, { band = -1 }) end)
    assert.has_error(function() dtw.search({}, { 1, 2 }) end)
    assert.has_error(function() dtw.stream({}) end)
    assert.has_error(function() dtw.lb_keogh({ 1, 2 }, { 1 }, { 2 }) end)
  end)
end)
