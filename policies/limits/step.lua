-- step: a TTFT target with a dead band.
--
-- An interval whose TTFT signal is below target_ms raises the limit by
-- step (unless the endpoint was app-limited: max_inflight < limit / 2);
-- one above target_ms * (1 + band) lowers it by step; in between it stays.
-- Drops (429, 503, timeouts) halve it, from the limit the rule answered
-- before them (C has cut once already; limits.cut).  An interval without
-- TTFT samples keeps the limit.  Predictable and easy to reason about when
-- the operator knows the latency the engines should keep.
local limits = require "sluice.limits"

local format, tonumber = string.format, tonumber

local _M = {
  name = "step",
  version = "1.0.0",
  schema = {
    target_ms = { type = "number", default = 1000, min = 0,
      doc = "below this TTFT signal the limit grows" },
    band = { type = "number", default = 0.5, min = 0,
      doc = "above target_ms * (1 + band) the limit falls; in between it stays" },
    step = { type = "integer", default = 1, min = 1,
      doc = "how much the limit moves per interval" },
    signal = { type = "string", default = "p90", values = limits.QUANTILES,
      doc = "which TTFT quantile is compared with the target" },
  },
}

function _M.limit(s, state, cfg)
  local cur = s.limit
  local k, why
  if s.drops > 0 then
    k = limits.cut(s, state.answer, 0.5)
    why = format("step: %d drops: %d -> %d", tonumber(s.drops), cur, k)
  elseif s.ttft_n == 0 then
    k, why = cur, format("step: no ttft samples: keep %d", cur)
  else
    local t, q = limits.ttft(s, cfg.signal), cfg.signal
    local high = cfg.target_ms * (1 + cfg.band)
    if t > high then
      k = limits.clamp(cur - cfg.step, s)
      why = format("step: ttft %s %.0f ms > %.0f ms: %d -> %d", q, t, high, cur, k)
    elseif t < cfg.target_ms and not limits.app_limited(s) then
      k = limits.clamp(cur + cfg.step, s)
      why = format("step: ttft %s %.0f ms < %.0f ms: %d -> %d", q, t, cfg.target_ms, cur, k)
    elseif t < cfg.target_ms then
      k, why = cur, format("step: app-limited (%d of %d streams): keep %d", s.max_inflight, cur, cur)
    else
      k, why = cur, format("step: ttft %s %.0f ms in [%.0f, %.0f] ms: keep %d", q, t, cfg.target_ms, high, cur)
    end
  end
  state.answer = k
  return k, why
end

return _M
