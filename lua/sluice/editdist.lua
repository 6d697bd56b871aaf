-- sluice.editdist: edit distance and LCS over token ids (analyzers/editdist.h)
-- through the FFI.
--
--   editdist.levenshtein({1, 2, 3}, {1, 3})            --> 1
--   editdist.lcs({1, 2, 3}, {1, 3})                    --> 2
--   editdist.levenshtein_ptr(pa, na, pb, nb)           -- uint32_t * cdata
--   local s = editdist.stream({5, 6, 7}, "search")     -- "global" | "search" | "lcs"
--   s:push(9)             --> the measure after this token
--   s:value(), s:count(), s:reset()
--
-- Token ids are integers in [0, 2^32).  The batch functions copy Lua arrays
-- into scratch buffers made at load and grown only when a longer input
-- comes; their C scratch is one object, grown the same way.  Streams carry
-- ffi.gc with sl_editdist_stream_free.  Expected failures return nil, err;
-- misuse raises error(msg, 2).
local ffi = require "ffi"
local base = require "sluice.base"
local C = base.C

ffi.cdef [[
typedef struct sl_editdist_s sl_editdist_t;
typedef struct sl_editdist_stream_s sl_editdist_stream_t;
size_t sl_editdist_size(size_t max_len);
int sl_editdist_new(size_t max_len, sl_editdist_t **out);
void sl_editdist_free(sl_editdist_t *ed);
int sl_editdist_levenshtein(sl_editdist_t *ed, const uint32_t *a, size_t na,
                            const uint32_t *b, size_t nb, size_t *dist);
int sl_editdist_lcs(sl_editdist_t *ed, const uint32_t *a, size_t na,
                    const uint32_t *b, size_t nb, size_t *len);
size_t sl_editdist_stream_size(size_t m);
int sl_editdist_stream_new(const uint32_t *pattern, size_t m, int mode,
                           sl_editdist_stream_t **out);
void sl_editdist_stream_free(sl_editdist_stream_t *s);
int sl_editdist_stream_push(sl_editdist_stream_t *s, uint32_t tok, size_t *value);
size_t sl_editdist_stream_value(const sl_editdist_stream_t *s);
uint64_t sl_editdist_stream_count(const sl_editdist_stream_t *s);
void sl_editdist_stream_reset(sl_editdist_stream_t *s);
]]

local sl_editdist_new = C.sl_editdist_new
local sl_editdist_free = C.sl_editdist_free
local sl_editdist_levenshtein = C.sl_editdist_levenshtein
local sl_editdist_lcs = C.sl_editdist_lcs
local sl_editdist_stream_new = C.sl_editdist_stream_new
local sl_editdist_stream_free = C.sl_editdist_stream_free
local sl_editdist_stream_push = C.sl_editdist_stream_push
local sl_editdist_stream_value = C.sl_editdist_stream_value
local sl_editdist_stream_count = C.sl_editdist_stream_count
local sl_editdist_stream_reset = C.sl_editdist_stream_reset
local strerror = base.strerror
local ffi_new, ffi_gc, tonumber, type, error = ffi.new, ffi.gc, tonumber, type, error
local min = math.min

local _M = {
  GLOBAL = 0, -- mirrors SL_EDITDIST_GLOBAL
  SEARCH = 1, -- mirrors SL_EDITDIST_SEARCH
  LCS = 2,    -- mirrors SL_EDITDIST_LCS
}
local MODES = { global = 0, search = 1, lcs = 2 }

local result = ffi_new("size_t[1]")
local ed_box = ffi_new("sl_editdist_t *[1]")
local stream_box = ffi_new("sl_editdist_stream_t *[1]")

-- Scratch: two id buffers and the C scratch object, grown on demand.
local buf_a, buf_b, buf_cap = ffi_new("uint32_t[?]", 1024), ffi_new("uint32_t[?]", 1024), 1024
local ed, ed_max = nil, 0

local function errstr(rc)
  return strerror(rc)
end

local function ensure_ed(max_len)
  if ed ~= nil and max_len <= ed_max then
    return ed
  end
  local want = ed_max > 0 and ed_max or 256
  while want < max_len do
    want = want * 2
  end
  local rc = sl_editdist_new(want, ed_box)
  if rc ~= 0 then
    return nil, errstr(rc)
  end
  ed = ffi_gc(ed_box[0], sl_editdist_free)
  ed_max = want
  return ed
end

local function ensure_bufs(n)
  if n <= buf_cap then
    return
  end
  local want = buf_cap
  while want < n do
    want = want * 2
  end
  buf_a, buf_b, buf_cap = ffi_new("uint32_t[?]", want), ffi_new("uint32_t[?]", want), want
end

local function fill(buf, t)
  for i = 1, #t do
    buf[i - 1] = t[i]
  end
end

local function batch(fn, a, na, b, nb)
  local e, err = ensure_ed(min(na, nb))
  if not e then
    return nil, err
  end
  local rc = fn(e, a, na, b, nb, result)
  if rc ~= 0 then
    return nil, errstr(rc)
  end
  return tonumber(result[0])
end

local function from_tables(fn, a, b, name)
  if type(a) ~= "table" or type(b) ~= "table" then
    error(name .. ": expected two arrays of token ids", 3)
  end
  local na, nb = #a, #b
  ensure_bufs(na > nb and na or nb)
  fill(buf_a, a)
  fill(buf_b, b)
  return batch(fn, buf_a, na, buf_b, nb)
end

-- Levenshtein distance between two arrays of token ids.
function _M.levenshtein(a, b)
  return from_tables(sl_editdist_levenshtein, a, b, "levenshtein")
end

-- Length of a longest common subsequence of two arrays of token ids.
function _M.lcs(a, b)
  return from_tables(sl_editdist_lcs, a, b, "lcs")
end

-- The same over uint32_t * cdata (borrowed for the call) and lengths.
function _M.levenshtein_ptr(a, na, b, nb)
  return batch(sl_editdist_levenshtein, a, na, b, nb)
end

function _M.lcs_ptr(a, na, b, nb)
  return batch(sl_editdist_lcs, a, na, b, nb)
end

local stream_mt = {}
stream_mt.__index = stream_mt

-- Appends one token id; returns the mode's measure over the text so far.
function stream_mt:push(tok)
  sl_editdist_stream_push(self.s, tok, result)
  return tonumber(result[0])
end

-- The measure without adding a token.
function stream_mt:value()
  return tonumber(sl_editdist_stream_value(self.s))
end

-- Tokens pushed since creation or the last reset.
function stream_mt:count()
  return tonumber(sl_editdist_stream_count(self.s))
end

-- Forgets the text, keeping pattern and mode.
function stream_mt:reset()
  sl_editdist_stream_reset(self.s)
end

-- A stream comparing pattern (an array of token ids) with a text given one
-- token at a time; mode is "global" (default), "search" or "lcs".
function _M.stream(pattern, mode)
  if type(pattern) ~= "table" then
    error("stream: expected an array of token ids", 2)
  end
  local m = MODES[mode or "global"]
  if m == nil then
    error("stream: mode must be \"global\", \"search\" or \"lcs\"", 2)
  end
  local n = #pattern
  ensure_bufs(n)
  fill(buf_a, pattern)
  local rc = sl_editdist_stream_new(buf_a, n, m, stream_box)
  if rc ~= 0 then
    return nil, errstr(rc)
  end
  return setmetatable({ s = ffi_gc(stream_box[0], sl_editdist_stream_free) }, stream_mt)
end

return _M
