-- wrk script: the TPC-H point query as one POST /v1/statement per request. Each thread's first MAX_KEY/THREADS
-- keys are its own and asked once, so the result cache answers none of them (measured: 2 threads, 15,000 keys,
-- 96% of the first 15,000 requests distinct; the rest are the faster thread wrapping before the slower ends).
--
--   wrk -t T -c N -d 10s -s load_tests/point_query.lua http://127.0.0.1:PORT/v1/statement -- MAX_KEY [SCHEMA [USER [THREADS]]]
--
-- The point query's result fits in the first response (no nextUri), so one POST is a whole query. A response
-- is counted as failed unless it is HTTP 200 with state FINISHED and no error. done() prints one line starting
-- with "BENCH " holding key=value pairs that load_tests/trino_protocol.py parses.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_index", #threads - 1)
end

local function gcd(a, b)
   while b ~= 0 do a, b = b, a % b end
   return a
end

function init(args)
   max_key = tonumber(args[1]) or 1500
   schema = args[2] or "tpch"
   failed = 0
   finished = 0
   -- Thread t of T sends positions t, t + T, t + 2T, ... of one walk over 0 .. max_key - 1 whose stride is
   -- coprime to max_key: every key once before any repeats, in an order that is not the table's.
   thread_count = tonumber(args[4]) or 1  -- wrk's -t: a thread's Lua state cannot see how many there are
   position = thread_index or 0
   stride = 7919
   while gcd(stride, max_key) ~= 1 do stride = stride + 2 end
   start = os.time() % max_key
   wrk.method = "POST"
   wrk.headers["X-Trino-User"] = args[3] or "admin"
   wrk.headers["X-Trino-Catalog"] = "demo"
   wrk.headers["X-Trino-Schema"] = schema
   wrk.headers["Content-Type"] = "text/plain; charset=utf-8"
end

function request()
   local key = (start + position * stride) % max_key + 1
   position = position + thread_count
   local body = "SELECT * FROM customer WHERE c_custkey = " .. key
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   if status == 200 and body:find('"state": *"FINISHED"') and not body:find('"error"')
      and not body:find('"nextUri"') then
      finished = finished + 1
   else
      failed = failed + 1
   end
end

function done(summary, latency, requests)
   local ok, bad = 0, 0
   for _, thread in ipairs(threads) do
      ok = ok + thread:get("finished")
      bad = bad + thread:get("failed")
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d finished=%d failed=%d "
         .. "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d non2xx=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
      ok, bad, e.connect, e.read, e.write, e.timeout, e.status))
end
