-- mod_lua handlers for the Apache lab server (see labwork.lua).
local labwork = require "labwork"

local function param(r, name)
  local get = r:parseargs()
  if get[name] then return get[name] end
  if r.method == "POST" then
    local post = r:parsebody(1 << 20)
    if post[name] then return post[name] end
  end
  return ""
end

-- GET /lua/kv?text=... or POST text=... (urlencoded)
function kv(r)
  local body = labwork.kv(param(r, "text"))
  r.content_type = "application/json"
  r:puts(body)
  return apache2.OK
end

-- GET /lua/primes?n=...
function primes(r)
  local n = math.tointeger(tonumber(param(r, "n")) or 1000) or 1000
  n = math.max(2, math.min(n, labwork.max_primes))
  r.content_type = "application/json"
  r:puts(labwork.primes(n))
  return apache2.OK
end
