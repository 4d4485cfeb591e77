-- wrk script for bench/nearby.py: cycles through a file of pre-drawn query strings (one per
-- line, drawn with a fixed seed), each thread from its own offset, and prints a JSON summary.
--
-- Environment: NEARBY_PATH (route), NEARBY_QUERIES (file), NEARBY_TOKEN (optional bearer).

local path = os.getenv("NEARBY_PATH")
local token = os.getenv("NEARBY_TOKEN")
local queries = {}
for line in io.lines(os.getenv("NEARBY_QUERIES")) do
  queries[#queries + 1] = line
end

local threads_started = 0

function setup(thread)
  thread:set("thread_index", threads_started)
  threads_started = threads_started + 1
end

local counter = 0

function init(args)
  counter = (thread_index or 0) * 7919
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  counter = counter + 1
  return wrk.format("GET", path .. "?" .. queries[(counter % #queries) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  -- The latency at every tenth of a percent, so that runs can be merged into one distribution.
  local quantiles = {}
  for i = 1, 999 do
    quantiles[i] = string.format("%d", latency:percentile(i / 10))
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d, '
      .. '"quantiles": [%s]}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, table.concat(quantiles, ",")
  ))
end
