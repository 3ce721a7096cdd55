-- wrk script: cycle through N distinct files, one per request (keep-alive).
--   wrk ... -s loadtest/many.lua http://HOST:PORT -- COUNT PREFIX
-- requests PREFIX0000.bin .. PREFIX<COUNT-1>.bin in turn (defaults: 1000, /many/).
-- wrk.format without a table of its own sends wrk.headers: the -H fields (loadtest's
-- browser-like heads) with every request.

local count = 1000
local prefix = "/many/"
local paths = {}
local n = 0

function init(args)
  count = tonumber(args[1] or count)
  prefix = args[2] or prefix
  for i = 0, count - 1 do
    paths[i] = string.format("%s%04d.bin", prefix, i)
  end
end

function request()
  local path = paths[n]
  n = (n + 1) % count
  return wrk.format("GET", path, nil)
end
