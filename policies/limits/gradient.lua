-- gradient: the default limit rule, after Netflix's Gradient2
-- (concurrency-limits): it compares the interval's latency with a
-- long-term average of it and moves the limit by their ratio.
--
-- Per interval, with short = the interval's normalized TTFT (ttft_p90 by
-- default), long = its long-term exponential average over long_window
-- intervals and itl = the interval's mean inter-token time:
--
--   gradient = clamp((tolerance * long + batch_slack * itl) / short, 0.5, 1)
--   new      = limit * gradient + (gradient == 1 and sqrt(limit) or 0)
--   limit    = limit * (1 - smoothing) + new * smoothing
--
-- While short stays within tolerance of long the gradient is 1 and the
-- limit grows by smoothing * sqrt(limit); once it rises past that (streams
-- wait inside the engine) the gradient shrinks and so does the limit.  The
-- same gradient can be taken on the inter-token time (itl_<signal>, with
-- use_itl), which grows when the engine batches more streams than it
-- decodes well; the smaller of the two limits wins.  It is off by
-- default: it is a latency policy, not a capacity signal.  On an engine
-- whose decode step costs more with every stream in the batch (llama.cpp
-- on a CPU: 1 ms a token at one stream, 2 at two) it holds the limit far
-- below the slots, where the engine still served more requests a second
-- (bench/converge); past the slots the inter-token time stops growing,
-- since the streams past them wait, so the TTFT is what shows capacity.  The limit is kept as a
-- fraction in the endpoint's state, so slow growth adds up across intervals;
-- a decrease always shows (at least one less than now), or a limit a hair
-- above the knee would sit there.
--
-- Where this departs from Gradient2, and why:
--   * batch_slack: a TTFT may rise by batch_slack inter-token times over
--     tolerance * long before it counts as queueing.  An engine that
--     batches one more stream in delays every first token by a decode
--     step or a few (its prefill shares the steps); a stream that waits
--     for a slot waits for a whole stream to end, tens of steps.  Without
--     the slack, an engine whose TTFT is a few steps at no load
--     (llama.cpp on a CPU: 3 ms, doubling with a second stream) reads any
--     batching as queueing and is held at 1 or 2 streams of its 4 slots
--     (bench/converge).  Measured in the interval's own inter-token time,
--     the slack grows with what a step costs now.
--   * sqrt(limit) is added only while the gradient is 1.  Gradient2 adds
--     it always, as room to queue; its balance point is a gradient of
--     1 - 1/sqrt(limit), which on an engine of 4 slots keeps 2 to 4
--     streams waiting inside the engine: the queue sluice keeps outside.
--     Without it the limit stops growing where queueing starts to show.
--   * long does not take a sample above tolerance * long: that is
--     queueing, not the engine's latency.  Gradient2's average absorbs it
--     under sustained overload and makes it the new normal; even a capped
--     sample (long growing 1.6% an interval) lets the limit creep up
--     without end, since the sqrt(limit) of room keeps short above
--     tolerance * long at the balance point (bench/converge measured it:
--     from 6 to 33 streams on a 4-slot engine in a minute).  A real shift
--     (a slower model) still reaches long: short stays high, the limit
--     falls to s.min, and a light interval (at or below s.min streams,
--     nothing queued in the engine) sets long to what it measured, up or
--     down; the probe below does the same on an endpoint that never gets
--     light.
--   * thin intervals pool: an interval with fewer than min_samples TTFT
--     samples is added to the next ones (sample-weighted quantiles, the
--     smallest minimum, the most streams) until they have min_samples
--     between them.  At a low limit, streams longer than the interval
--     give an interval a sample or two, and a rule that kept the limit on
--     each of them would never leave it (bench/converge: a start at 1
--     stayed at 1 for a minute on a 4-slot engine).
--   * the baseline probe: on an endpoint that has been saturated since
--     the rule first saw it, long is the queueing latency and the gradient
--     can never tell.  After probe_first intervals while the rule has
--     never seen a light one (an interval at or below s.min streams, which
--     refreshes long for free), then every probe_every intervals without
--     one,
--     the rule drops the limit to s.min until an interval runs that light
--     (at most probe_hold intervals), sets long to what it measured, and
--     goes back to the limit it had; the gradient does the rest.  The same
--     idea as BBR's ProbeRTT; it costs throughput, so it is rare after
--     the first (probe_every = 0 turns both off).  The first comes early
--     because a high start's long, even from ttft_min, can be a batched
--     one: llama-server's first 16 prefills at once took 43 ms, against 3
--     ms for one.
--
--   * long starts from the first interval's smallest TTFT (ttft_min, times
--     tolerance, without a warm-up average), so a
--     high start, whose first streams met a free engine while the rest
--     queued, sees the queueing at once; the probe is for the case where
--     even that interval was saturated (a reload under overload).
--
-- Like Gradient2: long decays (x0.95) while it is more than twice short; the
-- limit does not rise in an interval the endpoint was app-limited
-- (max_inflight < limit / 2: its latency says nothing about more streams);
-- the limit stays until (pooled) intervals have min_samples TTFT samples.
-- Drops (429, 503, timeouts) cut it: C has cut once already when they
-- happened, so the rule cuts from the limit it had answered before them,
-- to floor(that * drop_factor), never above what C left; it never rises
-- in an interval with drops.
--
-- slow_client: C asks about a stream whose client has stayed paused above
-- the high watermark for admission.slow_client_ms; it is cancelled while
-- requests wait in its pool's queue (it holds an engine slot others could
-- use) and kept otherwise.  The rule's own slow_client_ms (0 by default)
-- can ask for a longer pause than C's.
local limits = require "sluice.limits"

local format, floor, sqrt, tonumber = string.format, math.floor, math.sqrt, tonumber
local clamp = limits.clamp

local _M = {
  name = "gradient",
  version = "1.0.0",
  schema = {
    signal = { type = "string", default = "p90", values = limits.QUANTILES,
      doc = "which TTFT (and inter-token time) quantile the gradient reads" },
    use_itl = { type = "boolean", default = false,
      doc = "also take the gradient on inter-token time; the smaller limit wins" },
    tolerance = { type = "number", default = 1.5, min = 1,
      doc = "how far short may rise over long before the limit falls" },
    batch_slack = { type = "number", default = 4, min = 0,
      doc = "inter-token times the TTFT may rise by, over tolerance * long, before it counts as queueing" },
    smoothing = { type = "number", default = 0.2, min = 0.01, max = 1,
      doc = "how much of the new limit an interval takes" },
    long_window = { type = "integer", default = 60, min = 1,
      doc = "intervals the long-term average spans" },
    min_samples = { type = "integer", default = 5, min = 1,
      doc = "an interval with fewer TTFT samples keeps the limit" },
    drop_factor = { type = "number", default = 0.75, min = 0, max = 1,
      doc = "on drops, the limit answered before them times this (floored)" },
    probe_every = { type = "integer", default = 300, min = 0,
      doc = "intervals without a light one before the rule probes for the no-load TTFT (0 = never)" },
    probe_first = { type = "integer", default = 10, min = 1,
      doc = "intervals before the first probe, while the rule has never seen a light interval" },
    probe_hold = { type = "integer", default = 10, min = 1,
      doc = "most intervals a probe holds the limit at min waiting for the endpoint to drain" },
    slow_client_ms = { type = "number", default = 0, min = 0,
      doc = "a further bound on top of admission.slow_client_ms, which decides when C asks (0: none)" },
  },
}

-- long after the n-th interval's sample: a plain average of the first
-- WARMUP samples (one sample is no long-term average), then an exponential
-- average over `window` intervals; a sample above tolerance * long is
-- queueing and left out, and long decays while it is more than twice the
-- sample.
local WARMUP = 10
local function update_long(long, n, sample, window, tolerance, capped)
  if long == nil then return sample end
  local x = sample
  if x > long * tolerance then
    if not capped then return long end
    x = long * tolerance
  end
  local a = 2 / (window + 1)
  if n <= WARMUP and 1 / n > a then a = 1 / n end
  long = long + a * (x - long)
  if long > 2 * sample then long = long * 0.95 end
  return long
end

-- The interval s added to the thin ones before it (state.pool): sample
-- counts summed, quantiles weighted by them, the smallest minimum and the
-- most streams at once.  Returns the pool, which the caller drops once
-- the rule acted on it.
local function pool_add(state, s, q)
  local p = state.pool
  if p == nil then
    p = { intervals = 0, ttft_n = 0, ttft_sum = 0, ttft_min = 0, itl_n = 0, itl_sum = 0, max_inflight = 0 }
    state.pool = p
  end
  local n, ni = tonumber(s.ttft_n), tonumber(s.itl_n)
  p.intervals = p.intervals + 1
  p.ttft_n, p.ttft_sum = p.ttft_n + n, p.ttft_sum + n * limits.ttft(s, q)
  p.itl_n, p.itl_sum = p.itl_n + ni, p.itl_sum + ni * limits.itl(s, q)
  if s.ttft_min > 0 and (p.ttft_min == 0 or s.ttft_min < p.ttft_min) then p.ttft_min = s.ttft_min end
  if s.max_inflight > p.max_inflight then p.max_inflight = s.max_inflight end
  return p
end

-- The gradient of short against long, in [0.5, 1] (1 without a sample);
-- short may rise by slack (ms) over tolerance * long besides.
local function gradient(long, short, tolerance, slack)
  if short <= 0 then return 1 end
  local g = (tolerance * long + (slack or 0)) / short
  if g < 0.5 then return 0.5 end
  if g > 1 then return 1 end
  return g
end

-- Remembers the answer k (a fraction est behind it) and returns it.
local function answer(state, est, k, reason)
  state.est, state.answer = est, k
  return k, reason
end

function _M.limit(s, state, cfg)
  local cur = s.limit
  local q = cfg.signal
  local short = limits.ttft(s, q)
  -- The estimate goes on from the last answer unless C moved the limit
  -- since (its cut on drops, new bounds): then from where C left it.
  local est = state.est
  if est == nil or state.answer ~= cur then est = cur end
  state.since = (state.since or 0) + 1

  if s.drops > 0 then
    -- Before C's cut the limit was the rule's last answer (or, while a
    -- probe held it down, the one the probe goes back to).
    local before = state.probing and floor(state.saved + 0.5) or state.answer or cur
    local k = limits.cut(s, before, cfg.drop_factor)
    state.probing, state.pool = nil, nil
    return answer(state, k, k, format("%d drops: %d -> %d (x%.2f of %d)", tonumber(s.drops), cur, k,
      cfg.drop_factor, before))
  end

  local light = s.max_inflight <= s.min and s.ttft_n >= 1
  if state.probing then
    if light then
      -- The no-load latency: long from now on.
      local was = state.long or short
      state.long, state.seen_light = short, true
      local back = clamp(state.saved, s)
      state.probing, state.since = nil, 0
      return answer(state, back, floor(back + 0.5), format("probe: ttft %s %.0f ms at %d streams, long %.0f -> %.0f ms; back to %d",
        q, short, s.max_inflight, was, state.long, floor(back + 0.5)))
    end
    if state.probing >= cfg.probe_hold then
      local back = clamp(state.saved, s)
      state.probing, state.since = nil, 0
      return answer(state, back, floor(back + 0.5), format("probe: no interval at %d streams in %d; back to %d",
        s.min, cfg.probe_hold, floor(back + 0.5)))
    end
    state.probing = state.probing + 1
    return answer(state, s.min, s.min, format("probe: holding %d (%d streams at most in the interval)", s.min,
      s.max_inflight))
  end

  local p = pool_add(state, s, q)
  if p.ttft_n < cfg.min_samples then
    local over = p.intervals > 1 and format(" in %d intervals", p.intervals) or ""
    return answer(state, est, cur, format("%d ttft samples%s (< %d): keep %d", p.ttft_n, over, cfg.min_samples, cur))
  end
  -- From here on the pooled intervals are the interval.
  state.pool = nil
  short = p.ttft_sum / p.ttft_n
  local max_inflight = p.max_inflight
  light = max_inflight <= s.min

  if light then -- a free probe: the engine ran with no queue
    state.since, state.seen_light = 0, true
    state.long = short
    -- Inter-token time only rises here (see update_long's caller): a
    -- slower engine shows in it, one stream's faster decoding does not.
    if cfg.use_itl and p.itl_n >= 1 then
      local itl = p.itl_sum / p.itl_n
      if state.itl_long == nil or itl > state.itl_long then state.itl_long = itl end
    end
  end
  local due = state.seen_light and cfg.probe_every or math.min(cfg.probe_first, cfg.probe_every)
  if cfg.probe_every > 0 and state.since >= due and est > s.min then
    state.probing, state.saved = 1, est
    return answer(state, s.min, s.min, format("probe: %d -> %d for the no-load ttft (%d intervals since a light one)",
      cur, s.min, state.since))
  end

  -- The first long-term value comes from the interval's smallest TTFT,
  -- not its quantile: an endpoint already saturated when the rule first
  -- sees it (a high start) still served the first streams it got at once,
  -- and those show its no-load latency.  Times tolerance, since a quantile
  -- of unqueued streams lies above their minimum; and it is a long-term
  -- value at once (no warm-up average), so it does not soak up the
  -- queueing of the intervals that follow.
  local first
  if state.long == nil and p.ttft_min > 0 then
    first, state.n = p.ttft_min * cfg.tolerance, WARMUP
  end
  local n = (state.n or 0) + 1
  state.n = n
  local long = update_long(state.long or first, n, short, cfg.long_window, cfg.tolerance)
  state.long = long
  local itl = p.itl_n >= 1 and p.itl_sum / p.itl_n or 0
  local g, which, sig, base = gradient(long, short, cfg.tolerance, cfg.batch_slack * itl), "ttft", short, long
  if cfg.use_itl and p.itl_n >= cfg.min_samples then
    -- Inter-token time grows with the batch on an engine bound by its CPU
    -- (llama.cpp: 1 ms a token at one stream, 2 at two): a sample over
    -- tolerance still counts, capped, so long follows the batch the
    -- engine runs well, and one light interval does not pin it.
    local itl_long = update_long(state.itl_long, n, itl, cfg.long_window, cfg.tolerance, true)
    state.itl_long = itl_long
    local gi = gradient(itl_long, itl, cfg.tolerance)
    if gi < g then g, which, sig, base = gi, "itl", itl, itl_long end
  end

  -- The room to grow only while nothing queues (see the header).
  local new = est * g + (g >= 1 and sqrt(est) or 0)
  new = est * (1 - cfg.smoothing) + new * cfg.smoothing
  local held = max_inflight < cur / 2 and new > est -- app-limited
  if held then new = est end
  new = clamp(new, s)
  local k = floor(new + 0.5)
  if new < est and k >= cur and cur > s.min then
    k = cur - 1
    new = k
  end
  return answer(state, new, k, format("%s %s %.0f ms vs %.0f ms long: %.2f -> %d%s", which, q, sig, base, g, k,
    held and format(" (app-limited: %d of %d streams)", max_inflight, cur) or ""))
end

function _M.slow_client(c, cfg)
  local paused, limit_ms = c.paused_ms, cfg.slow_client_ms
  if limit_ms > 0 and paused <= limit_ms then
    return "keep", format("client paused %.1f s (<= %.1f s)", paused / 1000, limit_ms / 1000)
  end
  if c.queued <= 0 then
    return "keep", format("client paused %.1f s, nothing waits", paused / 1000)
  end
  if limit_ms > 0 then
    return "cancel", format("client paused %.1f s (> %.1f s) while %d wait", paused / 1000, limit_ms / 1000, c.queued)
  end
  return "cancel", format("client paused %.1f s while %d wait", paused / 1000, c.queued)
end

return _M
