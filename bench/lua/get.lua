-- GET /orders/{id}, cycling through the ids in BENCH_IDS_FILE.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = {["X-Tenant-Id"] = common.env("BENCH_TENANT", "bench-get")}
local next_id = common.cycle(common.env("BENCH_IDS_FILE", "ids.txt"))

setup = common.setup
done = common.done

function request()
  return wrk.format("GET", "/orders/" .. next_id(), headers)
end
