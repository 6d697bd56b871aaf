-- sluice.dict: the gateway's TTL dictionary (runtime/lua/ttldict.h) through
-- the FFI.  Its entries are C-owned, so they survive a policy reload.
-- Inside sluice the state's owner hands its dictionary over as the module
-- "sluice.host" (a slot this module reads on every call, so a policy's trial
-- run can point it at a scratch dictionary); elsewhere (a plain luajit, the
-- REPL) the module makes a private dictionary of its own.
--
--   dict.set(key, value, ttl_ms)      --> true | nil, err
--   dict.add(key, value, ttl_ms)      --> true | nil, "exists" | nil, err
--   dict.get(key)                     --> value (a string) | nil, "not found"
--   dict.incr(key, by, init, ttl_ms)  --> number | nil, err
--   dict.delete(key)                  --> true | nil, "not found"
--   dict.ttl(key)                     --> ms left (0 = never expires) | nil, "not found"
--   dict.count()                      --> entries, bytes
--   dict.flush()                      --> true
--   dict.sweep(max)                   --> entries reclaimed
--
-- Keys and values are byte strings (binary safe).  A number given as a
-- value is stored as decimal text and comes back from get as a string;
-- incr works on integers ("-?[0-9]+") and returns a number (exact up to
-- 2^53).  ttl_ms nil or 0 means no expiry; incr's ttl_ms applies only when
-- it creates the entry from init.  Expected failures return nil, err
-- ("not found", "exists", "not a number", "integer overflow", "dictionary
-- full"); misuse (a non-string key, a bad ttl) raises error(msg, 2).
--
-- get copies the value into a scratch buffer made at load; a value that
-- does not fit comes back with its size and get retries with a bigger
-- buffer (kept for next time up to 64 KiB, a one-off beyond that).
local ffi = require "ffi"
local base = require "sluice.base"
local C = base.C

ffi.cdef [[
typedef struct sl_ttldict_s sl_ttldict_t;
int sl_ttldict_new(const void *opts, sl_ttldict_t **out);
void sl_ttldict_free(sl_ttldict_t *d);
int sl_ffi_dict_get(sl_ttldict_t *d, const char *key, size_t klen, char *buf, size_t cap, size_t *vlen);
int sl_ffi_dict_set(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms);
int sl_ffi_dict_add(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms, int *added);
int sl_ffi_dict_incr(sl_ttldict_t *d, const char *key, size_t klen, int64_t by, int has_init, int64_t init,
                     int64_t ttl_ms, int64_t *out);
int sl_ffi_dict_delete(sl_ttldict_t *d, const char *key, size_t klen);
int sl_ffi_dict_ttl(sl_ttldict_t *d, const char *key, size_t klen, int64_t *remaining_ms);
int sl_ffi_dict_count(sl_ttldict_t *d, size_t *entries, size_t *bytes);
int sl_ffi_dict_flush(sl_ttldict_t *d);
int sl_ffi_dict_sweep(sl_ttldict_t *d, size_t max_entries, size_t *reclaimed);
int sl_ffi_dict_set_clock_for_tests(sl_ttldict_t *d, int64_t now_ms);
]]

-- The slot the dictionary is read from on every call.
local slot, own
do
  local ok, host = pcall(require, "sluice.host")
  if ok and type(host) == "table" and host.dict_slot ~= nil then
    slot = ffi.cast("sl_ttldict_t **", host.dict_slot)
  else
    local box = ffi.new("sl_ttldict_t *[1]")
    if C.sl_ttldict_new(nil, box) ~= 0 then error("sluice.dict: out of memory", 2) end
    own = ffi.gc(box[0], C.sl_ttldict_free) -- kept alive by the module table (_M._own)
    slot = ffi.new("sl_ttldict_t *[1]", own)
  end
end

local sl_ffi_dict_get = C.sl_ffi_dict_get
local sl_ffi_dict_set = C.sl_ffi_dict_set
local sl_ffi_dict_add = C.sl_ffi_dict_add
local sl_ffi_dict_incr = C.sl_ffi_dict_incr
local sl_ffi_dict_delete = C.sl_ffi_dict_delete
local sl_ffi_dict_ttl = C.sl_ffi_dict_ttl
local sl_ffi_dict_count = C.sl_ffi_dict_count
local sl_ffi_dict_flush = C.sl_ffi_dict_flush
local sl_ffi_dict_sweep = C.sl_ffi_dict_sweep
local sl_ffi_dict_set_clock_for_tests = C.sl_ffi_dict_set_clock_for_tests
local strerror = base.strerror
local ffi_new, ffi_string = ffi.new, ffi.string
local type, tonumber, tostring, error, format = type, tonumber, tostring, error, string.format

local E = base.E
local EINVAL, ENOMEM, ETOOBIG, EPARSE, ENOTFOUND = E.EINVAL, E.ENOMEM, E.ETOOBIG, E.EPARSE, E.ENOTFOUND

local _M = {
  MAX_KEY = 65535, -- mirrors SL_TTLDICT_MAX_KEY
}
_M._own = own -- the private dictionary (nil inside sluice) lives as long as the module

local SCRATCH_MAX = 65536
local scratch_cap = 4096
local scratch = ffi_new("char[?]", scratch_cap)
local len_box = ffi_new("size_t[1]")
local len_box2 = ffi_new("size_t[1]")
local i64_box = ffi_new("int64_t[1]")
local int_box = ffi_new("int[1]")

local TWO63 = 2 ^ 63

-- The message for a failure code; `what` names the caller's context.
local function fail(rc, what)
  if rc == ENOTFOUND then return nil, "not found" end
  if rc == ETOOBIG then return nil, "dictionary full" end
  if rc == EPARSE and what == "incr" then return nil, "not a number" end
  if rc == EINVAL and what == "incr" then return nil, "integer overflow" end
  if rc == ENOMEM then return nil, "out of memory" end
  return nil, strerror(rc)
end

local function check_key(key, fname)
  if type(key) ~= "string" then
    error(fname .. ": key must be a string, got " .. type(key), 3)
  end
  local n = #key
  if n == 0 or n > 65535 then
    error(fname .. ": key must be 1 to 65535 bytes, got " .. n, 3)
  end
end

local function check_ttl(ttl, fname)
  if ttl == nil then return 0 end
  if type(ttl) ~= "number" or ttl < 0 or ttl ~= ttl or ttl >= TWO63 then
    error(fname .. ": ttl_ms must be a number >= 0 (0 = no expiry), got " .. tostring(ttl), 3)
  end
  return ttl
end

local function check_value(v, fname)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v % 1 == 0 and v > -TWO63 and v < TWO63 then return format("%d", v) end
    local s = tostring(v)
    if tonumber(s) ~= v then s = format("%.17g", v) end
    return s
  end
  error(fname .. ": value must be a string or a number, got " .. t, 3)
end

local function check_int(v, fname, what)
  if type(v) ~= "number" or v % 1 ~= 0 or v < -TWO63 or v >= TWO63 then
    error(fname .. ": " .. what .. " must be an integer, got " .. tostring(v), 3)
  end
  return v
end

-- The value of key as a string, or nil, "not found".
function _M.get(key)
  check_key(key, "dict.get")
  local buf, cap = scratch, scratch_cap
  local rc = sl_ffi_dict_get(slot[0], key, #key, buf, cap, len_box)
  -- Too small: the size came back; retry with room for it.  The loop
  -- covers a value replaced between the two calls (not possible on one
  -- loop today, but cheap to be right about).
  while rc == ETOOBIG do
    local need = tonumber(len_box[0])
    if need <= SCRATCH_MAX then
      local n = scratch_cap
      while n < need do n = n * 2 end
      scratch, scratch_cap = ffi_new("char[?]", n), n
      buf, cap = scratch, n
    else
      buf, cap = ffi_new("char[?]", need), need
    end
    rc = sl_ffi_dict_get(slot[0], key, #key, buf, cap, len_box)
  end
  if rc == 0 then return ffi_string(buf, tonumber(len_box[0])) end
  return fail(rc, "get")
end

-- Stores value (string or number) under key, replacing value and TTL.
function _M.set(key, value, ttl_ms)
  check_key(key, "dict.set")
  local v = check_value(value, "dict.set")
  local rc = sl_ffi_dict_set(slot[0], key, #key, v, #v, check_ttl(ttl_ms, "dict.set"))
  if rc == 0 then return true end
  return fail(rc, "set")
end

-- Stores value only when key has no live entry; nil, "exists" otherwise.
function _M.add(key, value, ttl_ms)
  check_key(key, "dict.add")
  local v = check_value(value, "dict.add")
  local rc = sl_ffi_dict_add(slot[0], key, #key, v, #v, check_ttl(ttl_ms, "dict.add"), int_box)
  if rc ~= 0 then return fail(rc, "add") end
  if int_box[0] == 0 then return nil, "exists" end
  return true
end

-- Adds by (default 1) to the integer at key and returns the sum.  An absent
-- key starts from init when given (with ttl_ms), else nil, "not found".
function _M.incr(key, by, init, ttl_ms)
  check_key(key, "dict.incr")
  if by == nil then by = 1 end
  check_int(by, "dict.incr", "by")
  local has_init = 0
  if init ~= nil then
    check_int(init, "dict.incr", "init")
    has_init = 1
  else
    init = 0
  end
  local rc = sl_ffi_dict_incr(slot[0], key, #key, by, has_init, init, check_ttl(ttl_ms, "dict.incr"), i64_box)
  if rc == 0 then return tonumber(i64_box[0]) end
  return fail(rc, "incr")
end

-- Removes key; nil, "not found" when it had no live entry.
function _M.delete(key)
  check_key(key, "dict.delete")
  local rc = sl_ffi_dict_delete(slot[0], key, #key)
  if rc == 0 then return true end
  return fail(rc, "delete")
end

-- Milliseconds key has left (0 = never expires), or nil, "not found".
function _M.ttl(key)
  check_key(key, "dict.ttl")
  local rc = sl_ffi_dict_ttl(slot[0], key, #key, i64_box)
  if rc == 0 then return tonumber(i64_box[0]) end
  return fail(rc, "ttl")
end

-- Entries stored (expired ones count until reclaimed) and bytes charged.
function _M.count()
  local rc = sl_ffi_dict_count(slot[0], len_box, len_box2)
  if rc ~= 0 then return fail(rc, "count") end
  return tonumber(len_box[0]), tonumber(len_box2[0])
end

-- Removes every entry.
function _M.flush()
  local rc = sl_ffi_dict_flush(slot[0])
  if rc ~= 0 then return fail(rc, "flush") end
  return true
end

-- Reclaims expired entries, examining at most max (nil or 0 = all); the
-- daemon's loop does this on a timer.  Returns how many it freed.
function _M.sweep(max)
  if max ~= nil and (type(max) ~= "number" or max < 0) then
    error("dict.sweep: max must be a number >= 0", 2)
  end
  local rc = sl_ffi_dict_sweep(slot[0], max or 0, len_box)
  if rc ~= 0 then return fail(rc, "sweep") end
  return tonumber(len_box[0])
end

-- Tests only: freezes the dictionary's clock at now_ms; nil goes back to
-- the real clock.
function _M.set_clock_for_tests(now_ms)
  if now_ms ~= nil and type(now_ms) ~= "number" then
    error("dict.set_clock_for_tests: now_ms must be a number or nil", 2)
  end
  sl_ffi_dict_set_clock_for_tests(slot[0], now_ms or -1)
  return true
end

return _M
