-- ngx_http_lua handlers for the nginx lab server (see labwork.lua).
local labwork = require "labwork"

local M = {}

local function param(name)
  local v = ngx.req.get_uri_args()[name]
  if v == nil and ngx.req.get_method() == "POST" then
    ngx.req.read_body()
    local post = ngx.req.get_post_args()
    if post then v = post[name] end
  end
  if type(v) == "table" then v = v[1] end
  if type(v) ~= "string" then v = "" end
  return v
end

-- GET /lua/kv?text=... or POST text=... (urlencoded)
function M.kv()
  ngx.header.content_type = "application/json"
  ngx.print((labwork.kv(param("text"))))
end

-- GET /lua/primes?n=...
function M.primes()
  local n = math.floor(tonumber(param("n")) or 1000)
  n = math.max(2, math.min(n, labwork.max_primes))
  ngx.header.content_type = "application/json"
  ngx.print(labwork.primes(n))
end

return M
