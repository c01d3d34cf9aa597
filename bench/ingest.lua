-- wrk script for bench/ingest.py: half the reports open a new issue, half repeat one of 100.
-- The project key comes from the KEY environment variable.
local key = os.getenv("KEY")
local path = os.getenv("INGEST_PATH") or "/api/v1/issues"
local threads = {}
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

local counter = 0

function request()
  counter = counter + 1
  local fingerprint
  if counter % 2 == 0 then
    fingerprint = "repeat-" .. (counter % 100)
  else
    fingerprint = "new-" .. tid .. "-" .. counter .. "-" .. math.random(1, 1e9)
  end
  local body = '{"type":"ERROR","message":"Generate failed for ' .. fingerprint .. '",'
    .. '"fingerprint":["' .. fingerprint .. '"],"route":"/generate","user":{"id":"u' .. (counter % 5000) .. '"},'
    .. '"session_id":"s-' .. (counter % 5000) .. '","url":"https://app.example.com/generate",'
    .. '"release":"1.4.2","environment":"production",'
    .. '"timeline":[{"action":"click","target":"button#generate"},{"action":"request","target":"POST /api/generate"}],'
    .. '"request":{"method":"POST","path":"/api/generate","body":{"prompt":"a cat"},"status":502,"duration_ms":231.5}}'
  return wrk.format("POST", path, {["Content-Type"] = "application/json", ["X-Kaizen-Key"] = key}, body)
end
