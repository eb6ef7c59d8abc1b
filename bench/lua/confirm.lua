-- PATCH /orders/{id}/confirm with If-Match "1" on fresh drafts: each id of
-- BENCH_IDS_FILE is used once (threads take every n-th id). Once the ids run out the
-- script wraps around and the answers become 409s, which run_api.py reports as errors.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = {
  ["Content-Type"] = "application/json",
  ["X-Tenant-Id"] = common.env("BENCH_TENANT", "bench-confirm"),
  ["If-Match"] = '"1"',
}
local body = '{"totalCents": 1000}'
local ids
local i, step

setup = common.setup
done = common.done

function init(args)
  ids = common.read_lines(common.env("BENCH_IDS_FILE", "ids.txt"))
  step = tonumber(common.env("BENCH_THREADS", "1"))
  i = (thread_index or 0) + 1
end

function request()
  local id = ids[(i - 1) % #ids + 1]
  i = i + step
  return wrk.format("PATCH", "/orders/" .. id .. "/confirm", headers, body)
end
