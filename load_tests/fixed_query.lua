-- wrk script: one fixed statement as one POST /v1/statement per request.
--
--   wrk -t T -c N -d 10s -s load_tests/fixed_query.lua http://127.0.0.1:PORT/v1/statement -- "SELECT 1" [USER]
--
-- The gateway runs with protocol.inline_first_page, so a small result is the whole first response. A response
-- counts as finished only if it is HTTP 200 with state FINISHED, no error and no nextUri. done() prints one
-- "BENCH key=value ..." line (the same as point_query.lua's) that load_tests/trino_protocol.py parses.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   failed = 0
   finished = 0
   wrk.method = "POST"
   wrk.body = args[1] or "SELECT 1"
   wrk.headers["X-Trino-User"] = args[2] or "admin"
   wrk.headers["X-Trino-Catalog"] = "demo"
   wrk.headers["X-Trino-Schema"] = "tpch"
   wrk.headers["Content-Type"] = "text/plain; charset=utf-8"
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
