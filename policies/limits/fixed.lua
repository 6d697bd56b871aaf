-- fixed: the limit does not adapt.  It stays where it is (the pool's
-- slots, or wherever C's cuts on drops left it), or at `limit` when the
-- config sets one (C still keeps it in [min, max]).  For pools whose
-- engines are known, and to compare the adaptive rules against.
local format = string.format

local _M = {
  name = "fixed",
  version = "1.0.0",
  schema = {
    limit = { type = "integer", default = 0, min = 0,
      doc = "the limit to hold (0 = the limit as it is)" },
  },
}

function _M.limit(s, _, cfg)
  if cfg.limit > 0 then return cfg.limit, format("fixed: %d (config)", cfg.limit) end
  return s.limit, format("fixed: %d", s.limit)
end

return _M
