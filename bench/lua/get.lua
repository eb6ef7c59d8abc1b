-- GET /orders/{id}, cycling through the ids in BENCH_IDS_FILE.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = {["X-Tenant-Id"] = common.env("BENCH_TENANT", "bench-get")}
local ids
local i = 0

setup = common.setup
done = common.done

function init(args)
  ids = common.read_lines(common.env("BENCH_IDS_FILE", "ids.txt"))
  i = (thread_index or 0)
end

function request()
  i = i % #ids + 1
  return wrk.format("GET", "/orders/" .. ids[i], headers)
end
