-- GET BENCH_PATH (a list page: /orders?limit=20&cursor=…, /ref/list/offset?…) as tenant
-- BENCH_TENANT.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local path = common.env("BENCH_PATH", "/orders")
local headers = {["X-Tenant-Id"] = common.env("BENCH_TENANT", "bench-list")}

setup = common.setup
done = common.done

function request()
  return wrk.format("GET", path, headers)
end
