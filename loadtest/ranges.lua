-- wrk script: GET a random range of one file per request (keep-alive).
--   wrk ... -s loadtest/ranges.lua http://HOST:PORT -- PATH FILE_SIZE [LENGTH] [SEED]
-- Each request asks for "Range: bytes=a-b" with a uniform in [0, FILE_SIZE - LENGTH]
-- (any byte offset, aligned or not) and b = a + LENGTH - 1, so every range lies inside.
-- It carries the -H fields too (wrk.headers: the browser-like heads of loadtest), which
-- wrk.format leaves out when it is given a table of its own.

local path = "/"
local size = 0
local length = 1048576

function init(args)
  path = args[1]
  size = tonumber(args[2])
  length = tonumber(args[3] or length)
  math.randomseed(tonumber(args[4] or 12345))
end

function request()
  local a = math.random(0, size - length)
  local headers = {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  headers["Range"] = string.format("bytes=%d-%d", a, a + length - 1)
  return wrk.format("GET", path, headers)
end
