-- sluice.ahocorasick: multi-pattern matching over chunked bytes
-- (analyzers/ahocorasick.h) through the FFI.
--
--   local ac = assert(ahocorasick.new({ "\n\nUser:", "sk-" }, { nocase = true }))
--   local st = ac:stream()
--   local n = st:feed(chunk)          -- matches this chunk completed
--   for i = 1, n do
--     local pattern, first, last = st:match(i)  -- 1-based pattern index and
--   end                                         -- stream byte positions
--   local keep = st:holdback()        -- trailing bytes to hold back
--   st:offset(), st:reset()
--   ac:find_all(s)  --> { { pattern, first, last }, ... } (convenience)
--
-- Automata carry ffi.gc with sl_ac_free; a stream is a Lua-owned struct
-- that keeps its automaton alive, with a match buffer that grows only when
-- one chunk completes more matches than it holds.  Expected failures
-- return nil, err; misuse raises error(msg, 2).
local ffi = require "ffi"
local base = require "sluice.base"
local C = base.C

ffi.cdef [[
typedef struct sl_ac_s sl_ac_t;
typedef struct {
  const sl_ac_t *ac;
  uint32_t state;
  uint64_t offset;
} sl_ac_stream_t;
typedef struct {
  uint64_t end;
  uint32_t pattern;
  uint32_t len;
} sl_ac_match_t;
size_t sl_ac_size(const char *const *pats, const size_t *lens, size_t n, unsigned flags);
int sl_ac_new(const char *const *pats, const size_t *lens, size_t n, unsigned flags,
              sl_ac_t **out);
void sl_ac_free(sl_ac_t *ac);
uint32_t sl_ac_states(const sl_ac_t *ac);
uint32_t sl_ac_max_matches(const sl_ac_t *ac);
void sl_ac_stream_init(sl_ac_stream_t *st, const sl_ac_t *ac);
int sl_ac_feed(sl_ac_stream_t *st, const void *buf, size_t len, sl_ac_match_t *out, size_t cap,
               size_t *nout, size_t *consumed);
size_t sl_ac_holdback(const sl_ac_stream_t *st);
]]

local sl_ac_new = C.sl_ac_new
local sl_ac_free = C.sl_ac_free
local sl_ac_states = C.sl_ac_states
local sl_ac_max_matches = C.sl_ac_max_matches
local sl_ac_stream_init = C.sl_ac_stream_init
local sl_ac_feed = C.sl_ac_feed
local sl_ac_holdback = C.sl_ac_holdback
local strerror = base.strerror
local ffi_new, ffi_gc, ffi_cast, ffi_copy = ffi.new, ffi.gc, ffi.cast, ffi.copy
local tonumber, type, error = tonumber, type, error
local ETOOBIG = base.E.ETOOBIG
local MATCH_SIZE = ffi.sizeof("sl_ac_match_t")

local _M = {
  NOCASE = 1, -- mirrors SL_AC_NOCASE
}

local box = ffi_new("sl_ac_t *[1]")
local nout = ffi_new("size_t[1]")
local used = ffi_new("size_t[1]")

local automaton_mt = {}
automaton_mt.__index = automaton_mt
local stream_mt = {}
stream_mt.__index = stream_mt

-- Feeds a string; returns how many matches it completed (read them with
-- st:match(i)).  The chunk is borrowed for the call only.
function stream_mt:feed(chunk)
  if type(chunk) ~= "string" then
    error("feed: expected a string", 2)
  end
  local len, off, n = #chunk, 0, 0
  local p = ffi_cast("const char *", chunk) -- chunk stays referenced below
  local st = self.st
  repeat
    local rc = sl_ac_feed(st, p + off, len - off, self.buf + n, self.cap - n, nout, used)
    if rc ~= 0 and rc ~= ETOOBIG then
      error("feed: " .. strerror(rc), 2)
    end
    n = n + tonumber(nout[0])
    off = off + tonumber(used[0])
    if off < len then
      -- The buffer filled (a chunk with more matches than it holds, which
      -- is rare): double it and feed the rest.
      local bigger = ffi_new("sl_ac_match_t[?]", self.cap * 2)
      ffi_copy(bigger, self.buf, n * MATCH_SIZE)
      self.buf, self.cap = bigger, self.cap * 2
    end
  until off >= len
  self.n = n
  return n
end

-- Match i (1-based) of the last feed: pattern index (1-based), and the
-- 1-based stream positions of its first and last bytes.
function stream_mt:match(i)
  if i < 1 or i > self.n then
    error("match: index out of range", 2)
  end
  local m = self.buf[i - 1]
  local last = tonumber(m["end"])
  return m.pattern + 1, last - m.len + 1, last
end

-- Trailing bytes of what was fed that a match could still end in.
function stream_mt:holdback()
  return tonumber(sl_ac_holdback(self.st))
end

-- Bytes fed so far.
function stream_mt:offset()
  return tonumber(self.st.offset)
end

-- Starts over at offset 0.
function stream_mt:reset()
  sl_ac_stream_init(self.st, self.ac.a)
  self.n = 0
end

-- A new stream on this automaton.
function automaton_mt:stream()
  local cap = 64
  local mm = tonumber(sl_ac_max_matches(self.a))
  while cap < mm do
    cap = cap * 2
  end
  local st = ffi_new("sl_ac_stream_t")
  sl_ac_stream_init(st, self.a)
  return setmetatable({ st = st, ac = self, buf = ffi_new("sl_ac_match_t[?]", cap), cap = cap, n = 0 },
    stream_mt)
end

-- Number of automaton states.
function automaton_mt:states()
  return tonumber(sl_ac_states(self.a))
end

-- Every match in a whole string, as { pattern, first, last } tables.
function automaton_mt:find_all(s)
  local st = self:stream()
  local n = st:feed(s)
  local res = {}
  for i = 1, n do
    local p, f, l = st:match(i)
    res[i] = { p, f, l }
  end
  return res
end

-- An automaton for an array of non-empty strings; opts.nocase folds ASCII
-- letters.
function _M.new(patterns, opts)
  if type(patterns) ~= "table" then
    error("new: expected an array of strings", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("new: options must be a table", 2)
  end
  local n = #patterns
  if n == 0 then
    return nil, "no patterns"
  end
  local ptrs, lens = ffi_new("const char *[?]", n), ffi_new("size_t[?]", n)
  for i = 1, n do
    local p = patterns[i]
    if type(p) ~= "string" then
      error("new: pattern " .. i .. " is not a string", 2)
    end
    if #p == 0 then
      return nil, "pattern " .. i .. " is empty"
    end
    ptrs[i - 1], lens[i - 1] = p, #p -- patterns stays referenced for the call
  end
  local flags = (opts and opts.nocase) and 1 or 0
  local rc = sl_ac_new(ptrs, lens, n, flags, box)
  if rc ~= 0 then
    return nil, strerror(rc)
  end
  return setmetatable({ a = ffi_gc(box[0], sl_ac_free), n = n }, automaton_mt)
end

return _M
