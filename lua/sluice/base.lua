-- sluice.base: finds the sluice C library, checks its ABI version and owns
-- the status codes.
--
-- Inside the daemon the symbols are already in the process (ffi.C); from a
-- plain luajit the library is loaded with ffi.load, from $SLUICE_LIB when set,
-- else "libsluice.so" on the usual search path.  Every other sluice module
-- gets the library from here, so a mismatched library is refused once, at
-- load, with a message that names both versions.
--
--   base.C                 -- the library (ffi.C or the loaded libsluice.so)
--   base.E.ETOOBIG         -- -1003: the status codes, mirroring runtime/base/errors.h
--   base.strerror(rc)      --> "limit exceeded": the C library's name for rc
--
-- The codes and sl_strerror are declared here once, for every module: a
-- module compares a return code against base.E and turns it into a message
-- with base.strerror, and keeps no numbers or cdef of its own.
local ffi = require "ffi"

ffi.cdef [[
int sl_ffi_abi_version(void);
const char *sl_ffi_version(void);
const char *sl_strerror(int code);
]]

local ffi_string, type, error = ffi.string, type, error

local _M = {
  ABI_VERSION = 5, -- mirrors SL_FFI_ABI_VERSION in runtime/base/version.h
  -- Mirrors the SL_E* codes of runtime/base/errors.h; the first five are also
  -- the SL_AN_E* codes of analyzers/status.h, with the same numbers.
  -- tests/lua/base_spec.lua checks every one against sl_strerror.
  E = {
    OK = 0,
    EINVAL = -1001,    -- invalid argument or value
    ENOMEM = -1002,    -- allocation failed
    ETOOBIG = -1003,   -- exceeds a configured limit
    EPARSE = -1004,    -- malformed input
    ENOTFOUND = -1005, -- no such name
    EAGAIN = -1006,    -- needs more input
    EUPSTREAM = -1007, -- upstream failed
    ETIMEDOUT = -1008, -- a timeout fired
    ECANCELED = -1009, -- canceled by the other side
  },
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
_M.version = ffi_string(lib.sl_ffi_version())

local sl_strerror = lib.sl_strerror

-- The C library's message for status code rc (an SL_E* code, as in _M.E,
-- or a libuv code), as a Lua string; "unknown error" for a number it does
-- not know.  A non-number raises.
function _M.strerror(rc)
  if type(rc) ~= "number" then
    error("strerror: expected a status code (a number), got " .. type(rc), 2)
  end
  return ffi_string(sl_strerror(rc))
end

return _M
