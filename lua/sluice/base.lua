-- sluice.base: finds the sluice C library and checks its ABI version.
--
-- Inside the daemon the symbols are already in the process (ffi.C); from a
-- plain luajit the library is loaded with ffi.load, from $SLUICE_LIB when set,
-- else "libsluice.so" on the usual search path.  Every other sluice module
-- gets the library from here, so a mismatched library is refused once, at
-- load, with a message that names both versions.
local ffi = require "ffi"

ffi.cdef [[
int sl_ffi_abi_version(void);
const char *sl_ffi_version(void);
]]

local _M = {
  ABI_VERSION = 2, -- mirrors SL_FFI_ABI_VERSION in runtime/version.h
}

local function in_process()
  local ok = pcall(function() return ffi.C.sl_ffi_abi_version end)
  return ok
end

-- Returns true, or nil and a message when lib reports another ABI version.
function _M.check_abi(lib, expected)
  local got = tonumber(lib.sl_ffi_abi_version())
  if got ~= expected then
    return nil, ("sluice: library ABI version %d does not match the Lua modules' %d"):format(got, expected)
  end
  return true
end

local lib
if in_process() then
  lib = ffi.C
else
  lib = ffi.load(os.getenv("SLUICE_LIB") or "libsluice.so")
end

local ok, err = _M.check_abi(lib, _M.ABI_VERSION)
if not ok then
  error(err, 2)
end

_M.C = lib
_M.version = ffi.string(lib.sl_ffi_version())

return _M
