-- wrk script for bench/http_load.py: one file, four modes (the first script argument).
--
--   wrk ... -s bench/wrk/rewards.lua URL -- healthz
--   wrk ... -s bench/wrk/rewards.lua URL -- event  <run id> <users> <api key>
--   wrk ... -s bench/wrk/rewards.lua URL -- batch  <run id> <users> <api key> <size>
--   wrk ... -s bench/wrk/rewards.lua URL -- around <board users> <api key> <k>
--
-- Event ids are unique per request: "<run>-<thread>-<counter>" (each wrk thread has its
-- own Lua state, so the thread number set in setup() keeps them apart).
-- done() prints one "RESULT key=value ..." line that the driver parses.

local threads = {}
local next_thread = 1

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local mode, run, users, key, size, k
local counter = 0
local headers = {}

function init(args)
  mode = args[1]
  if mode == "event" or mode == "batch" then
    run, users, key = args[2], tonumber(args[3]), args[4]
    size = tonumber(args[5] or "1000")
    headers["Content-Type"] = "application/json"
  elseif mode == "around" then
    users, key, k = tonumber(args[2]), args[3], args[4] or "5"
  end
  if key then headers["Authorization"] = "Bearer " .. key end
  math.randomseed(os.time() + (thread_id or 0) * 7919)
end

local function event_json()
  counter = counter + 1
  local i = counter
  local kind = i % 3
  local event_type = kind == 0 and "crm.deal_closed" or "lms.course_completed"
  return string.format(
    '{"id":"%s-%d-%d","type":"%s","user_id":"u%d","occurred_at":"2026-11-20T10:00:00Z",'
      .. '"source":"bench","attributes":{"amount":%d}}',
    run, thread_id, i, event_type, (i * 7 + thread_id) % users, 1500 + i % 100)
end

function request()
  if mode == "event" then
    return wrk.format("POST", "/v1/events", headers, event_json())
  elseif mode == "batch" then
    local parts = {}
    for j = 1, size do parts[j] = event_json() end
    return wrk.format("POST", "/v1/events", headers,
      '{"events":[' .. table.concat(parts, ",") .. ']}')
  elseif mode == "around" then
    local path = string.format("/v1/leaderboards/global/around/u%d?k=%s",
      math.random(0, users - 1), k)
    return wrk.format("GET", path, headers)
  end
  return wrk.format("GET", "/healthz", headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d "
      .. "p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
