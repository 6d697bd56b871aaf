-- sluice.base: loads the real libsluice.so, checks its ABI version, and owns
-- the status codes (base.E, base.strerror) that every other module uses.
local ffi = require "ffi"

describe("sluice.base", function()
  local base = require "sluice.base"

  it("loads the library and reads its version", function()
    assert.is_string(base.version)
    assert.matches("^%d+%.%d+%.%d+$", base.version)
    assert.are.equal(base.ABI_VERSION, tonumber(base.C.sl_ffi_abi_version()))
  end)

  it("accepts the library's own ABI version", function()
    assert.is_true(base.check_abi(base.C, base.ABI_VERSION))
  end)

  it("refuses a mismatched ABI version with both numbers in the message", function()
    local ok, err = base.check_abi(base.C, base.ABI_VERSION + 1)
    assert.is_nil(ok)
    assert.matches("ABI version " .. base.ABI_VERSION, err, 1, true)
    assert.matches(tostring(base.ABI_VERSION + 1), err, 1, true)
  end)

  it("mirrors SL_FFI_ABI_VERSION from runtime/base/version.h", function()
    local f = assert(io.open("runtime/base/version.h"))
    local src = f:read("*a")
    f:close()
    local c_abi = tonumber(src:match("#define SL_FFI_ABI_VERSION (%d+)"))
    assert.are.equal(c_abi, base.ABI_VERSION)
  end)

  describe("status codes", function()
    -- sl_strerror's name for each code (runtime/base/errors.c), written out here
    -- so that a drift between base.E and the C library fails: a Lua number
    -- that C gives another meaning gets another message.
    local NAMES = {
      OK = "ok",
      EINVAL = "invalid argument",
      ENOMEM = "out of memory",
      ETOOBIG = "limit exceeded",
      EPARSE = "malformed input",
      ENOTFOUND = "not found",
      EAGAIN = "needs more input",
      EUPSTREAM = "upstream failed",
      ETIMEDOUT = "timed out",
      ECANCELED = "canceled",
    }

    it("match the C library's code for every name", function()
      for name, msg in pairs(NAMES) do
        assert.is_number(base.E[name], name)
        assert.are.equal(msg, base.strerror(base.E[name]), name)
      end
      for name in pairs(base.E) do
        assert.is_string(NAMES[name], "base.E." .. name .. " has no expected name here")
      end
    end)

    it("are distinct, and C knows no code just past them", function()
      local seen, lowest = {}, 0
      for name, code in pairs(base.E) do
        assert.is_nil(seen[code], name .. " reuses " .. code)
        seen[code] = name
        if code < lowest then lowest = code end
      end
      -- A code added to runtime/base/errors.h but not to base.E would be named.
      assert.are.equal("unknown error", base.strerror(lowest - 1))
    end)

    it("agree with analyzers/status.h", function()
      local f = assert(io.open("analyzers/status.h"))
      local src = f:read("*a")
      f:close()
      local n = 0
      for name, num in src:gmatch("#define SL_AN_(%u+)%s+%(?(%-?%d+)%)?") do
        assert.are.equal(base.E[name], tonumber(num), "SL_AN_" .. name)
        n = n + 1
      end
      assert.are.equal(6, n)
    end)

    it("are owned by base alone: no other module declares sl_strerror or codes", function()
      local ls = assert(io.popen("ls lua/sluice/*.lua"))
      local checked = 0
      for path in ls:lines() do
        if not path:match("/base%.lua$") then
          local f = assert(io.open(path))
          local src = f:read("*a")
          f:close()
          assert.is_nil(src:find("sl_strerror", 1, true), path .. " mentions sl_strerror")
          assert.is_nil(src:find("%-100%d"), path .. " spells out a status code")
          checked = checked + 1
        end
      end
      ls:close()
      assert.is_true(checked > 5)
    end)

    it("strerror raises on a non-number", function()
      assert.has_error(function() base.strerror("EINVAL") end,
        "strerror: expected a status code (a number), got string")
    end)
  end)
end)
