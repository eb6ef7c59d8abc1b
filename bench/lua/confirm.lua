-- A transition on fresh orders, each id of BENCH_IDS_FILE used once (threads take every
-- n-th id): PATCH /orders/{id}/confirm with If-Match "1" on drafts (the default), or with
-- BENCH_ACTION=close, POST /orders/{id}/close with If-Match "2" on confirmed orders.
-- Once the ids run out the script wraps around and the answers become 409s, which the
-- benchmark reports as errors.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local action = common.env("BENCH_ACTION", "confirm")
local method, body, tag = "PATCH", '{"totalCents": 1000}', '"1"'
if action == "close" then
  method, body, tag = "POST", nil, '"2"'
end
local headers = {
  ["X-Tenant-Id"] = common.env("BENCH_TENANT", "bench-confirm"),
  ["If-Match"] = tag,
}
if body then headers["Content-Type"] = "application/json" end
local next_id = common.cycle(
  common.env("BENCH_IDS_FILE", "ids.txt"), tonumber(common.env("BENCH_THREADS", "1"))
)

setup = common.setup
done = common.done

function request()
  return wrk.format(method, "/orders/" .. next_id() .. "/" .. action, headers, body)
end
