-- The shipped narration policy: one short sentence per key event.
--
-- narrate(ev) receives a `const sl_ffi_narration_event_t *` (see
-- lua/sluice/narration.lua) and returns a sentence, or nil to say nothing.
-- Sentences are logged beside the event's structured fields (request id,
-- endpoint, generation), with secrets redacted by the runtime.  Hot-reloads
-- with the placement policy: both belong to a generation.
local narration = require "sluice.narration"

local str, format = narration.str, string.format
local K = narration

local function who(ev)
  local rid = str(ev.request_id)
  return rid ~= "" and rid or "a request"
end

local say = {
  [K.PLACEMENT] = function(ev)
    local retry = ev.attempt > 1 and format(" (attempt %d)", ev.attempt) or ""
    return format("%s for model %s went to %s%s because %s.", who(ev), str(ev.model), str(ev.endpoint), retry,
      str(ev.text))
  end,
  [K.RELOAD_OK] = function(ev)
    return format("Reloaded policies: %s.", str(ev.text))
  end,
  [K.RELOAD_FAILED] = function(ev)
    return format("Reload failed, generation %d keeps serving: %s.", tonumber(ev.generation), str(ev.text))
  end,
  [K.READY] = function(ev)
    return format("Endpoint %s passed its health check and takes streams.", str(ev.endpoint))
  end,
  [K.NOT_READY] = function(ev)
    return format("Endpoint %s failed its health check and takes no new streams: %s.", str(ev.endpoint),
      str(ev.text))
  end,
  [K.COOLDOWN] = function(ev)
    return format("Endpoint %s failed %d times in a row; it rests for %.0f ms.", str(ev.endpoint),
      tonumber(ev.tokens), ev.ms)
  end,
  [K.PAUSE] = function(ev)
    return format("%s's client reads slower than %s writes; sluice stopped reading the engine after %d tokens.",
      who(ev), str(ev.endpoint), tonumber(ev.tokens))
  end,
  [K.CANCEL] = function(ev)
    return format("%s's client went away after %d tokens; the request to %s was cancelled and the %d tokens are counted.",
      who(ev), tonumber(ev.tokens), str(ev.endpoint), tonumber(ev.tokens))
  end,
  [K.GUARD] = function(ev)
    -- A guard fired or masked, or a tenant's pipeline acted ("pipeline ...").
    return format("%s: %s (after %d tokens).", who(ev), str(ev.text), tonumber(ev.tokens))
  end,
  [K.LIMIT] = function(ev)
    local old, new = tonumber(ev.attempt), tonumber(ev.tokens)
    return format("Endpoint %s now takes %d stream%s at once (was %d): %s.", str(ev.endpoint), new,
      new == 1 and "" or "s", old, str(ev.text))
  end,
  [K.QUEUE] = function(ev)
    return format("%s waited %.0f ms in the queue and was %s (%d still waiting).", who(ev), ev.ms, str(ev.text),
      tonumber(ev.tokens))
  end,
  [K.SHARED] = function(ev)
    if ev.attempt ~= 0 then
      return format("Redis at %s answers again: limits and the dictionary are shared once more.", str(ev.text))
    end
    return format("Redis stopped answering (%s, outage %d): each limit applies its fail mode and the dictionary "
      .. "stays local until it is back.", str(ev.text), tonumber(ev.tokens))
  end,
  [K.ENGINE] = function(ev)
    -- A managed engine's life: the text starts with what happened (start,
    -- ready, crash, restart, swap, stop) and says the rest.
    local model = str(ev.model)
    return format("Engine %s%s: %s.", str(ev.endpoint), model ~= "" and (" (" .. model .. ")") or "", str(ev.text))
  end,
  [K.STREAM_END] = function(ev)
    local reason = str(ev.text)
    if reason == "complete" then
      return format("%s finished: %d tokens from %s in %.0f ms.", who(ev), tonumber(ev.tokens), str(ev.endpoint),
        ev.ms)
    end
    return format("%s ended (%s) after %d tokens in %.0f ms.", who(ev), reason, tonumber(ev.tokens), ev.ms)
  end,
}

return {
  name = "narration",
  version = "1.0.0",
  schema = {},
  narrate = function(ev)
    local f = say[ev.kind]
    return f and f(ev) or nil
  end,
}
