-- wrk script for the HTTP publish figures (bench/http_publish.py runs it).
--
--   wrk -t2 -c50 -d7s -s publish.lua URL -- TOKEN BODY_FILE SECONDS [PATHS_FILE THREADS]
--
-- POSTs the request body in BODY_FILE (one event, or a batch) to URL on every keep-alive
-- connection for SECONDS (with PATHS_FILE, to each of its lines' paths in turn instead,
-- every thread starting at its own place: the publish figure spread over many Axons), then stops sending and lets the requests in flight finish before
-- wrk's own -d ends the run: every request sent is answered, so the Axon's last sequence
-- can be checked against the 2xx count exactly. done() prints one line starting with
-- "BENCH " and then JSON: per-status counts, wrk's error counts, requests sent and answered,
-- the seconds from the first request to the last answer, and request latency percentiles.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now() -- CLOCK_MONOTONIC, shared by all threads
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

-- Per thread (each has its own Lua state); read back in done() with thread:get().
sent, answered, first, last, statuses = 0, 0, 0, 0, {}
local req, stop_at
local reqs, next_req = {}, 1

function init(args)
  local f = assert(io.open(args[2], "rb"))
  local body = f:read("*a")
  f:close()
  local headers = {
    ["Authorization"] = "Bearer " .. args[1],
    ["Content-Type"] = "application/json",
  }
  req = wrk.format("POST", nil, headers, body)
  if args[4] then
    for path in io.lines(args[4]) do
      table.insert(reqs, wrk.format("POST", path, headers, body))
    end
    local thread_count = tonumber(args[5]) -- wrk's -t, passed along with PATHS_FILE
    next_req = 1 + math.floor((thread_number - 1) * #reqs / thread_count)
  end
  first = now()
  stop_at = first + tonumber(args[3])
end

-- wrk asks delay() before each request it sends (and calls request() once more on its
-- own, to check the script), so requests are counted here.
function delay()
  if now() >= stop_at then
    return 3600 * 1000 -- past the deadline: send nothing more, wrk's -d ends the run
  end
  sent = sent + 1
  return 0
end

function request()
  if #reqs == 0 then
    return req
  end
  local r = reqs[next_req]
  next_req = next_req % #reqs + 1
  return r
end

function response(status, headers, body)
  answered = answered + 1
  last = now()
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = { sent = 0, answered = 0, first = nil, last = 0, statuses = {} }
  for _, thread in ipairs(threads) do
    totals.sent = totals.sent + thread:get("sent")
    totals.answered = totals.answered + thread:get("answered")
    local f = thread:get("first")
    if totals.first == nil or f < totals.first then totals.first = f end
    totals.last = math.max(totals.last, thread:get("last"))
    for status, n in pairs(thread:get("statuses")) do
      totals.statuses[status] = (totals.statuses[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(totals.statuses) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"statuses": {%s}, "requests": %d, "sent": %d, "answered": %d, ' ..
    '"seconds": %.6f, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d}, "latency_p50_us": %d, "latency_p99_us": %d, "latency_max_us": %d}\n',
    table.concat(parts, ", "), summary.requests, totals.sent, totals.answered,
    totals.last - totals.first, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
