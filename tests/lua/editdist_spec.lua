-- Specs for lua/sluice/editdist.lua: batch distances and LCS against plain
-- DPs written here, streams against the batch form after every token,
-- cdata input, inputs longer than the initial scratch, misuse.
local ffi = require "ffi"
local editdist = require "sluice.editdist"

local function ref_lev(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local d = prev[j - 1] + (a[i] == b[j] and 0 or 1)
      if prev[j] + 1 < d then d = prev[j] + 1 end
      if cur[j - 1] + 1 < d then d = cur[j - 1] + 1 end
      cur[j] = d
    end
    prev = cur
  end
  return prev[#b]
end

local function ref_lcs(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = 0 end
  for i = 1, #a do
    local cur = { [0] = 0 }
    for j = 1, #b do
      if a[i] == b[j] then
        cur[j] = prev[j - 1] + 1
      else
        cur[j] = math.max(prev[j], cur[j - 1])
      end
    end
    prev = cur
  end
  return prev[#b]
end

local function random_ids(n, sigma)
  local t = {}
  for i = 1, n do t[i] = (math.random(0, sigma - 1) * 2654435761) % 4294967296 end
  return t
end

local function prefix(t, n)
  local r = {}
  for i = 1, n do r[i] = t[i] end
  return r
end

describe("sluice.editdist", function()
  math.randomseed(42)

  it("computes small cases", function()
    assert.equals(0, editdist.levenshtein({}, {}))
    assert.equals(3, editdist.levenshtein({ 1, 2, 3 }, {}))
    assert.equals(1, editdist.levenshtein({ 1, 2, 3 }, { 1, 3 }))
    assert.equals(2, editdist.lcs({ 1, 2, 3 }, { 1, 3 }))
    assert.equals(0, editdist.lcs({ 4294967295 }, { 0 }))
    assert.equals(1, editdist.lcs({ 4294967295 }, { 4294967295 }))
  end)

  it("agrees with the plain DP on random pairs", function()
    for it = 1, 400 do
      local sigma = ({ 2, 5, 50, 100000 })[it % 4 + 1]
      local a = random_ids(math.random(0, 150), sigma)
      local b = random_ids(math.random(0, 150), sigma)
      assert.equals(ref_lev(a, b), editdist.levenshtein(a, b))
      assert.equals(ref_lcs(a, b), editdist.lcs(a, b))
    end
  end)

  it("grows its scratch for long inputs", function()
    local a = random_ids(3000, 40)
    local b = {}
    for i = 1, #a do b[i] = (i % 7 == 0) and 999999 or a[i] end
    assert.equals(ref_lev(a, b), editdist.levenshtein(a, b))
    assert.equals(ref_lcs(a, b), editdist.lcs(a, b))
  end)

  it("takes uint32_t cdata", function()
    local a = ffi.new("uint32_t[4]", { 1, 2, 3, 4 })
    local b = ffi.new("uint32_t[3]", { 1, 3, 4 })
    assert.equals(1, editdist.levenshtein_ptr(a, 4, b, 3))
    assert.equals(3, editdist.lcs_ptr(a, 4, b, 3))
  end)

  it("streams agree with the batch form after every token", function()
    for it = 1, 40 do
      local p = random_ids(math.random(0, 90), it % 2 == 0 and 4 or 1000)
      local t = random_ids(math.random(1, 120), it % 2 == 0 and 4 or 1000)
      local g = assert(editdist.stream(p, "global"))
      local l = assert(editdist.stream(p, "lcs"))
      assert.equals(#p, g:value())
      for j = 1, #t do
        local pre = prefix(t, j)
        assert.equals(editdist.levenshtein(p, pre), g:push(t[j]))
        assert.equals(editdist.lcs(p, pre), l:push(t[j]))
      end
      assert.equals(#t, g:count())
      g:reset()
      assert.equals(0, g:count())
      assert.equals(#p, g:value())
    end
  end)

  it("search streams report the best occurrence ending at each token", function()
    for it = 1, 60 do
      local p = random_ids(math.random(1, 12), 3)
      local t = random_ids(math.random(1, 40), 3)
      local s = assert(editdist.stream(p, "search"))
      for j = 1, #t do
        -- a substring longer than 2 * #p is farther than the empty one
        local best = #p
        for i = math.max(1, j - 2 * #p), j do
          local sub = {}
          for k = i, j do sub[#sub + 1] = t[k] end
          best = math.min(best, ref_lev(p, sub))
        end
        assert.equals(best, s:push(t[j]))
      end
    end
  end)

  it("rejects misuse", function()
    assert.has_error(function() editdist.levenshtein("abc", {}) end)
    assert.has_error(function() editdist.lcs({}, nil) end)
    assert.has_error(function() editdist.stream({ 1 }, "fuzzy") end)
    assert.has_error(function() editdist.stream(7) end)
  end)
end)
