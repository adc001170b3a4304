-- labwork: request handlers shared by the Apache (mod_lua, Lua 5.3) and
-- nginx (ngx_http_lua, LuaJIT) lab servers. Nothing here is instrumented:
-- the cost of each call depends only on the request.
local M = {}

-- kv parses "key = value" lines (a settings form). The pattern is the
-- usual trim idiom, and it backtracks: a line of n blanks and no '='
-- costs O(n^3) steps, while ordinary lines cost microseconds.
function M.kv(text)
  local out, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local k, v = line:match("^%s*(.-)%s*=%s*(.-)%s*$")
    if k and k ~= "" then
      n = n + 1
      out[#out + 1] = string.format("%q: %q", k, v)
    end
  end
  return "{" .. table.concat(out, ", ") .. "}\n", n
end

-- primes counts the primes below n by trial division: the cost grows
-- with n (n = 1000 takes well under a millisecond, n = 10^7 seconds).
function M.primes(n)
  local count = 0
  for i = 2, n - 1 do
    local prime = true
    local d = 2
    while d * d <= i do
      if i % d == 0 then prime = false; break end
      d = d + 1
    end
    if prime then count = count + 1 end
  end
  return string.format('{"n": %d, "primes": %d}\n', n, count)
end

M.max_primes = 100000000

return M
