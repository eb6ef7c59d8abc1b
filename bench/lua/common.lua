-- Shared by every wrk script of the API benchmark: parameters come from environment
-- variables set by bench/run_api.py; done() prints one machine-readable line.
local M = {}

function M.env(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then return default end
  return value
end

-- Lines of a file (order ids), for scripts that walk through ids.
function M.read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then lines[#lines + 1] = line end
  end
  return lines
end

-- A thread's walk through the lines of a file: a function that gives the next line, round
-- and round. The file is read at the first call, in the thread, which then starts at its
-- own index (setup() has set thread_index by then) and moves `step` lines at a time: with
-- 1 (the default) every thread goes through every line, with BENCH_THREADS the threads
-- share the lines out. (wrk calls request() before it starts a request's clock.)
function M.cycle(path, step)
  local lines, i
  return function()
    if lines == nil then
      lines, i = M.read_lines(path), thread_index or 0
    else
      i = i + (step or 1)
    end
    return lines[i % #lines + 1]
  end
end

-- The body and headers of a create (create.lua, replay.lua, replay_pool.lua); the body is
-- run_api.py's BODY, which its replays must repeat to the byte.
M.CREATE_BODY = '{"totalCents": 1234, "currency": "EUR", "metadata": {"source": "bench"}}'

function M.create_headers()
  return {
    ["Content-Type"] = "application/json",
    ["X-Tenant-Id"] = M.env("BENCH_TENANT", "bench-create"),
  }
end

-- Threads get an index in setup() so they can split work (ids, key space) between them.
-- With BENCH_HOSTS ("127.0.0.1:8001 127.0.0.1:8002", set by harness.run_wrk: one address
-- per gunicorn worker process) thread i connects to the i-th address, modulo their count:
-- wrk gives every thread the same number of connections, so every address gets its share.
local thread_count = 0
local hosts = nil
function M.setup(thread)
  local index = thread_count
  thread:set("thread_index", index)
  thread_count = thread_count + 1
  local spec = M.env("BENCH_HOSTS", nil)
  if spec == nil then return end
  if hosts == nil then
    hosts = {}
    for host, port in spec:gmatch("([^%s]+):(%d+)") do
      hosts[#hosts + 1] = wrk.lookup(host, port)[1]
    end
  end
  thread.addr = hosts[index % #hosts + 1]
end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_s":%.3f,"rps":%.2f,"p50_ms":%.3f,"p90_ms":%.3f,' ..
    '"p99_ms":%.3f,"mean_ms":%.3f,"max_ms":%.3f,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end

return M
