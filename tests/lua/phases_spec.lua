-- Specs for lua/sluice/phases.lua, the loader runtime/lua/generation.c runs
-- for every policy file: each spec's wrapper binds its phase; an optional
-- phase the module leaves out is skipped (false), a required one is refused
-- with its wrapper's message; the bound functions adapt C's argument and
-- answer (index and reason for placement); errors keep file:line.
local ffi = require "ffi"
local phases = require "sluice.phases"
local placement = require "sluice.placement"

local function policy(src)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  return path
end

local PLACE = { name = "placement", entry = "place", wrapper = "sluice.placement", optional = false }
local EXTRA = { name = "extra", entry = "extra", optional = true }

local function as_userdata(cdata)
  -- What C hands a bound function: a pointer, not cdata.
  return ffi.cast("void *", cdata)
end

describe("sluice.phases", function()
  local paths = {}
  local function file(src)
    local p = policy(src)
    paths[#paths + 1] = p
    return p
  end
  teardown(function()
    for _, p in ipairs(paths) do os.remove(p) end
  end)

  it("binds each phase through its wrapper and returns the module's name and version", function()
    local path = file("return { name = 'two', version = '3', schema = { k = { type = 'integer', default = 1 } },\n" ..
      "  place = function(ctx) return ctx.n, nil end,\n" ..
      "  extra = function(p) return 7, 'seven' end }")
    local bound, name, version = phases.load(path, { k = 2 }, { PLACE, EXTRA })
    assert.equals("two", name)
    assert.equals("3", version)
    assert.is_function(bound[1])
    assert.is_function(bound[2])
    local ctx = placement.new_context({ {}, {}, {} })
    local k, reason = bound[1](as_userdata(ctx))
    assert.equals(3, k)
    assert.equals("two", reason) -- no reason: the policy's name
    assert.same({ 7, "seven" }, { bound[2](nil) })
  end)

  it("skips an optional phase the module does not define", function()
    local path = file("return { name = 'one', version = '1', schema = {}, place = function() return 1, 'x' end }")
    local bound = phases.load(path, nil, { PLACE, EXTRA })
    assert.is_function(bound[1])
    assert.is_false(bound[2])
  end)

  it("refuses a required phase the module does not define, with the wrapper's message", function()
    local path = file("return { name = 'none', version = '1', schema = {} }")
    local ok, err = pcall(phases.load, path, nil, { PLACE })
    assert.is_false(ok)
    assert.equals(path .. ': policy "none": missing "place" (function(ctx) returning index, reason)', err)
  end)

  it("refuses an optional entry that is not a function", function()
    local path = file("return { name = 'n', version = '1', schema = {}, extra = 3 }")
    local ok, err = pcall(phases.load, path, nil, { EXTRA })
    assert.is_false(ok)
    assert.equals(path .. ': "extra" must be a function, got number', err)
  end)

  it("refuses a module that is not a table, even when every phase is optional", function()
    local path = file("return 42")
    local ok, err = pcall(phases.load, path, nil, { EXTRA })
    assert.is_false(ok)
    assert.equals(path .. ": a policy module must return a table, got number", err)
  end)

  it("keeps file:line for errors while loading and config errors from the wrapper", function()
    local path = file("local x = 1\nerror('boom')\n")
    local ok, err = pcall(phases.load, path, nil, { PLACE })
    assert.is_false(ok)
    assert.equals(path .. ":2: boom", err)
    path = file("return { name = 'c', version = '1', schema = {}, place = function() return 1 end }")
    ok, err = pcall(phases.load, path, { nope = 1 }, { PLACE })
    assert.is_false(ok)
    assert.equals(path .. ': placement.config: policy "c": unknown config key "nope"', err)
  end)

  it("has placement refuse an answer that is not a candidate index", function()
    local ctx = placement.new_context({ {}, {} })
    for _, case in ipairs({ { "return 3", "3" }, { "return 1.5", "1.5" }, { "return 'x'", "a string" },
      { "return nil", "a nil" } }) do
      local path = file("return { name = 'b', version = '1', schema = {}, place = function() " .. case[1] .. " end }")
      local bound = phases.load(path, nil, { PLACE })
      local ok, err = pcall(bound[1], as_userdata(ctx))
      assert.is_false(ok)
      assert.equals(path .. ": place() returned " .. case[2] .. ", not a candidate index in 1..2", err)
    end
  end)
end)
