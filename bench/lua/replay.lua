-- POST the same create with the same Idempotency-Key and body every time: after the
-- first (made by run_api.py before the measurement) every answer is a replay.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = common.create_headers()
headers["Idempotency-Key"] = common.env("BENCH_KEY", "bench-replay")

setup = common.setup
done = common.done

function request()
  return wrk.format("POST", common.env("BENCH_PATH", "/orders"), headers, common.CREATE_BODY)
end
