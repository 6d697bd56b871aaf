-- aimd: additive increase, multiplicative decrease.
--
-- An interval with TTFT samples, no drops, its TTFT signal under
-- timeout_ms and the endpoint not app-limited (max_inflight < limit / 2)
-- raises the limit by one; drops (429, 503, timeouts) or a TTFT signal
-- over timeout_ms multiply it by backoff (floored, so it always falls by
-- at least one).  C has cut the limit once already for drops, so on drops
-- the rule cuts from the limit it answered before them (limits.cut).  An
-- interval without samples, or app-limited, keeps the limit.  The classic
-- TCP rule: simple, stable, and slow to find a far-away knee (one stream
-- per interval).
local limits = require "sluice.limits"

local format, floor, tonumber = string.format, math.floor, tonumber

local _M = {
  name = "aimd",
  version = "1.0.0",
  schema = {
    backoff = { type = "number", default = 0.9, min = 0, max = 1,
      doc = "the limit is multiplied by this on drops or a slow interval" },
    timeout_ms = { type = "number", default = 5000, min = 0,
      doc = "a TTFT signal above this counts as a drop (0 = only real drops)" },
    signal = { type = "string", default = "p90", values = limits.QUANTILES,
      doc = "which TTFT quantile is compared with timeout_ms" },
  },
}

function _M.limit(s, state, cfg)
  local cur = s.limit
  local k, why
  if s.drops > 0 then
    k = limits.cut(s, state.answer, cfg.backoff)
    why = format("aimd: %d drops: %d -> %d", tonumber(s.drops), cur, k)
  elseif s.ttft_n > 0 and cfg.timeout_ms > 0 and limits.ttft(s, cfg.signal) > cfg.timeout_ms then
    k = limits.clamp(floor(cur * cfg.backoff), s)
    why = format("aimd: ttft %s %.0f ms > %.0f ms: %d -> %d", cfg.signal, limits.ttft(s, cfg.signal),
      cfg.timeout_ms, cur, k)
  elseif s.ttft_n == 0 then
    k, why = cur, format("aimd: no ttft samples: keep %d", cur)
  elseif limits.app_limited(s) then
    k, why = cur, format("aimd: app-limited (%d of %d streams): keep %d", s.max_inflight, cur, cur)
  else
    k = limits.clamp(cur + 1, s)
    why = format("aimd: ttft %s %.0f ms: %d -> %d", cfg.signal, limits.ttft(s, cfg.signal), cur, k)
  end
  state.answer = k
  return k, why
end

return _M
