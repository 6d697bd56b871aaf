-- sluice.base: loads the real libsluice.so and checks its ABI version.
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

  it("mirrors SL_FFI_ABI_VERSION from runtime/version.h", function()
    local f = assert(io.open("runtime/base/version.h"))
    local src = f:read("*a")
    f:close()
    local c_abi = tonumber(src:match("#define SL_FFI_ABI_VERSION (%d+)"))
    assert.are.equal(c_abi, base.ABI_VERSION)
  end)
end)
