-- Replays spread over many keys: BENCH_KEYS_FILE holds keys that run_api.py used once
-- (same body as below) before the measurement; every request replays one of them, so
-- concurrent requests rarely share a key (replay.lua measures the one-hot-key case).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = common.create_headers()
-- The threads share the keys out (BENCH_THREADS): each walking all of them from its own
-- index, two threads would ask for the same key at about the same time, on both workers.
local next_key = common.cycle(
  common.env("BENCH_KEYS_FILE", "keys.txt"), tonumber(common.env("BENCH_THREADS", "1"))
)

setup = common.setup
done = common.done

function request()
  headers["Idempotency-Key"] = next_key()
  return wrk.format("POST", "/orders", headers, common.CREATE_BODY)
end
