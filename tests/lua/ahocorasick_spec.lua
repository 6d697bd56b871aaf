-- Specs for lua/sluice/ahocorasick.lua: matches against a brute-force scan
-- written here with chunks cut at random, holdback, case folding, a chunk
-- with more matches than the stream's buffer, misuse.
local ahocorasick = require "sluice.ahocorasick"

-- Every (pattern, first, last) in s, ordered like the kernel: by last byte,
-- longer pattern first, then lower index.
local function brute(pats, s, nocase)
  local res = {}
  local hay = nocase and s:lower() or s
  for last = 1, #s do
    local here = {}
    for p = 1, #pats do
      local pat = nocase and pats[p]:lower() or pats[p]
      local first = last - #pat + 1
      if first >= 1 and hay:sub(first, last) == pat then
        here[#here + 1] = { p, first, last }
      end
    end
    table.sort(here, function(x, y)
      if x[2] ~= y[2] then return x[2] < y[2] end
      return x[1] < y[1]
    end)
    for _, m in ipairs(here) do res[#res + 1] = m end
  end
  return res
end

local function random_string(n, alpha)
  local t = {}
  for i = 1, n do
    local k = math.random(1, #alpha)
    t[i] = alpha:sub(k, k)
  end
  return table.concat(t)
end

describe("sluice.ahocorasick", function()
  math.randomseed(3)

  it("finds the classic example", function()
    local ac = assert(ahocorasick.new{ "he", "she", "his", "hers" })
    assert.same({ { 2, 2, 4 }, { 1, 3, 4 }, { 4, 3, 6 } }, ac:find_all("ushers"))
    assert.equals(10, ac:states())
  end)

  it("agrees with a brute-force scan across random chunks", function()
    for it = 1, 200 do
      local alpha = ({ "ab", "abc", "aAbB", "xyz. " })[it % 4 + 1]
      local nocase = it % 3 == 0
      local pats = {}
      for i = 1, math.random(1, 10) do pats[i] = random_string(math.random(1, 6), alpha) end
      local text = random_string(math.random(0, 300), alpha)
      local ac = assert(ahocorasick.new(pats, { nocase = nocase }))
      local st = ac:stream()
      local got, pos = {}, 0
      while pos < #text do
        local len = math.random(1, 9)
        local chunk = text:sub(pos + 1, pos + len)
        local n = st:feed(chunk)
        pos = pos + #chunk
        for i = 1, n do
          local p, f, l = st:match(i)
          got[#got + 1] = { p, f, l }
        end
        -- No match still to come may start before the held-back tail.
        local keep = st:holdback()
        assert.is_true(keep <= pos)
        assert.equals(pos, st:offset())
      end
      assert.same(brute(pats, text, nocase), got)
    end
  end)

  it("holds back only what could still match", function()
    local ac = assert(ahocorasick.new{ "\n\nUser:", "<|end|>" })
    local st = ac:stream()
    assert.equals(0, st:feed("Hello there."))
    assert.equals(0, st:holdback())
    assert.equals(0, st:feed("\n\nUs"))
    assert.equals(4, st:holdback())
    assert.equals(0, st:feed("ually <|e"))
    assert.equals(3, st:holdback())
    assert.equals(1, st:feed("nd|>"))
    local p, first, last = st:match(1)
    assert.equals(2, p)
    assert.equals(#"Hello there.\n\nUsually " + 1, first)
    assert.equals(first + 6, last)
    assert.equals(0, st:holdback())
  end)

  it("folds ASCII case when asked", function()
    local ac = assert(ahocorasick.new({ "Stop" }, { nocase = true }))
    assert.equals(3, #ac:find_all("stop STOP sToP"))
    local exact = assert(ahocorasick.new{ "Stop" })
    assert.equals(0, #exact:find_all("stop STOP sToP"))
  end)

  it("grows its match buffer for a dense chunk", function()
    local ac = assert(ahocorasick.new{ "a", "aa", "aaa" })
    local st = ac:stream()
    local n = st:feed(string.rep("a", 1000))
    assert.equals(1000 + 999 + 998, n)
    local p, f, l = st:match(n)
    assert.equals(1, p)
    assert.equals(1000, f)
    assert.equals(1000, l)
    st:reset()
    assert.equals(0, st:offset())
  end)

  it("returns errors and rejects misuse", function()
    local ac, err = ahocorasick.new{ "ok", "" }
    assert.is_nil(ac)
    assert.is_string(err)
    ac, err = ahocorasick.new{}
    assert.is_nil(ac)
    assert.has_error(function() ahocorasick.new("abc") end)
    assert.has_error(function() ahocorasick.new{ 1, 2 } end)
    local good = assert(ahocorasick.new{ "x" })
    local st = good:stream()
    assert.has_error(function() st:feed(42) end)
    st:feed("x")
    assert.has_error(function() st:match(2) end)
  end)
end)
