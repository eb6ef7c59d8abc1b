-- Replays spread over many keys: BENCH_KEYS_FILE holds keys that run_api.py used once
-- (same body as below) before the measurement; every request replays one of them, so
-- concurrent requests rarely share a key (replay.lua measures the one-hot-key case).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local body = '{"totalCents": 1234, "currency": "EUR", "metadata": {"source": "bench"}}'
local headers = {
  ["Content-Type"] = "application/json",
  ["X-Tenant-Id"] = common.env("BENCH_TENANT", "bench-create"),
}
local keys
local i = 0

setup = common.setup
done = common.done

function init(args)
  keys = common.read_lines(common.env("BENCH_KEYS_FILE", "keys.txt"))
  i = (thread_index or 0)
end

function request()
  i = i % #keys + 1
  headers["Idempotency-Key"] = keys[i]
  return wrk.format("POST", "/orders", headers, body)
end
