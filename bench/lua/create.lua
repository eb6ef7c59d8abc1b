-- POST a create with a new Idempotency-Key per request (the package's create, or the
-- reference /ref/create with BENCH_PATH, which ignores the header).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local path = common.env("BENCH_PATH", "/orders")
local prefix = common.env("BENCH_KEY_PREFIX", "bench")
local headers = common.create_headers()
local counter = 0

setup = common.setup
done = common.done

function request()
  counter = counter + 1
  headers["Idempotency-Key"] = prefix .. "-" .. (thread_index or 0) .. "-" .. counter
  return wrk.format("POST", path, headers, common.CREATE_BODY)
end
