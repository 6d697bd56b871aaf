-- Specs for lua/sluice/loops.lua: planted exact and near loops found with
-- the right period and start, English text and random ids give nothing,
-- the batch form agrees with the stream, settings, misuse.
local loops = require "sluice.loops"

local function random_stream(n, vocab)
  local t = {}
  for i = 1, n do t[i] = math.random(1000, 1000 + vocab - 1) end
  return t
end

local function run(d, toks)
  local events = {}
  for i = 1, #toks do
    local state, period, start, repeats, max_dist, length = d:push(toks[i])
    if state == "new" or state == "ended" then
      events[#events + 1] = { at = i, state = state, period = period, start = start,
        repeats = repeats, max_dist = max_dist, length = length }
    end
  end
  return events
end

local function words(text)
  local ids, map, n = {}, {}, 0
  for w in text:gmatch("[%w']+%p?") do
    local key = w:lower()
    if not map[key] then n = n + 1; map[key] = n * 7919 end
    ids[#ids + 1] = map[key]
  end
  return ids
end

local prose = [[
The harbour was quiet in the early morning, before the fishing boats came
back and the market opened on the quay. Gulls stood on the mooring posts and
watched the water, and an old man mended nets in the doorway of a shed that
smelled of tar and salt. Further along, a girl was painting the name of a boat
in careful white letters, stepping back every few minutes to see whether the
curve of the first letter matched the last. By nine the first boats were in,
low in the water, and the quiet was over: engines, shouting, crates dragged
over stone, the bell of the auction ringing for the first lot of the day.
]]

describe("sluice.loops", function()
  math.randomseed(7)

  it("finds a planted exact loop with its period and start", function()
    local d = assert(loops.new())
    for p = 2, 40, 3 do
      d:reset()
      local toks = random_stream(600, 50000)
      local start, reps = 200, math.max(3, math.ceil(16 / p)) + 1
      for i = 0, reps * p - 1 do toks[start + i] = toks[start + i % p] end
      local ev = run(d, toks)
      assert.equals(2, #ev)
      assert.equals("new", ev[1].state)
      assert.equals(p, ev[1].period)
      assert.equals(start, ev[1].start)
      assert.equals(0, ev[1].max_dist)
      assert.equals("ended", ev[2].state)
      assert.equals(reps * p, ev[2].length)
      assert.equals(reps, ev[2].repeats)
    end
  end)

  it("finds a near loop whose word changes each time round", function()
    local d = assert(loops.new())
    local toks = random_stream(700, 50000)
    local body = random_stream(12, 50000)
    for r = 0, 4 do
      for i = 1, 12 do
        toks[300 + r * 12 + i - 1] = (i == 5) and (5000000 + r) or body[i]
      end
    end
    local ev = run(d, toks)
    assert.equals(2, #ev)
    assert.equals(12, ev[1].period)
    assert.equals(300, ev[1].start)
    assert.equals(1, ev[1].max_dist)
    assert.equals(5, ev[2].repeats)
  end)

  it("is quiet on English text and random ids", function()
    local d = assert(loops.new())
    local ids = words(prose)
    assert.is_true(#ids > 100)
    assert.equals(0, #run(d, ids))
    d:reset()
    assert.equals(0, #run(d, random_stream(20000, 100)))
  end)

  it("the batch form agrees with the stream", function()
    local d = assert(loops.new{ max_dist_ratio = 0 })
    local b = assert(loops.new{ max_dist_ratio = 0 })
    local toks = random_stream(300, 30)
    for i = 0, 39 do toks[100 + i] = toks[100 + i % 8] end
    local seen = {}
    for i = 1, #toks do
      seen[i] = toks[i]
      local s1, p1, st1, r1 = d:push(toks[i])
      if s1 == "new" then
        local s2, p2, st2, r2 = b:check(seen)
        assert.equals("new", s2)
        assert.same({ p1, st1, r1 }, { p2, st2, r2 })
        return
      end
      assert.equals("none", (b:check(seen)))
    end
    error("the planted loop was not found")
  end)

  it("rejects settings it cannot honour, and misuse", function()
    local d, err = loops.new{ window = 64, max_period = 60 }
    assert.is_nil(d)
    assert.is_string(err)
    assert.has_error(function() loops.new{ colour = 1 } end)
    assert.has_error(function() loops.new{ window = "big" } end)
    assert.has_error(function() loops.new(5) end)
    local ok = assert(loops.new())
    assert.has_error(function() ok:check("abc") end)
    assert.equals(256, loops.defaults().window)
  end)
end)
