-- The soak mix for wrk; bench/reliability/wrk.py fills in the paths.
-- args: <limit (0 = none)> <seed> <mix|fixed>
local limit, mode, counter = 0, "mix", 0
statuses = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  limit = tonumber(args[1]) or 0
  math.randomseed(tonumber(args[2]) or 1)
  mode = args[3] or "mix"
end

local hexd = "0123456789abcdef"
local letters = "abcdefghijklmnopqrstuvwxyz"
local function pick(chars, n)
  local t = {}
  for i = 1, n do
    local k = math.random(#chars)
    t[i] = chars:sub(k, k)
  end
  return table.concat(t)
end
local function uuid()
  return pick(hexd, 8) .. "-" .. pick(hexd, 4) .. "-4" .. pick(hexd, 3) .. "-a" .. pick(hexd, 3) .. "-" .. pick(hexd, 12)
end
local body = '{"sku":"A-1","quantity":2,"note":"soak"}'

function request()
  if mode == "fixed" then
    return wrk.format("GET", "__FAST_PATH__")
  end
  local rid
  if math.random(100) <= 5 then
    rid = "not a valid id " .. pick(hexd, 4)  -- replaced by the agent (pattern mismatch)
  else
    rid = pick(hexd, 32)
  end
  local h = {["X-Request-ID"] = rid}
  local r = math.random(1000)
  if r <= 650 then
    return wrk.format("GET", "/api/v1/users/" .. math.random(1000000) .. "/orders/" .. pick(hexd, 12), h)
  elseif r <= 700 then
    return wrk.format("GET", "/api/v1/users/" .. math.random(1000000) .. "?page=" .. math.random(100), h)
  elseif r <= 750 then
    h["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/v1/users/" .. math.random(1000000) .. "/orders", h, body)
  elseif r <= 810 then
    return wrk.format("GET", "/api/v1/items/" .. uuid(), h)
  elseif r <= 850 then
    return wrk.format("GET", "/pages/" .. math.random(1000000) .. "/view", h)
  elseif r <= 890 then
    return wrk.format("GET", "/api/v1/reports/" .. math.random(1000000), h)
  elseif r <= 930 then
    return wrk.format("GET", "/legacy/" .. pick(hexd, 20) .. "/export", h)
  elseif r <= 980 then
    return wrk.format("GET", "__SLOW_PREFIX__" .. math.random(1000000) .. "?delay_s=0.05&q=" .. pick(letters, 6), h)
  else
    return wrk.format("GET", "/scan/" .. pick(letters, 6), h)
  end
end

function response(status, headers, body)
  counter = counter + 1
  statuses[status] = (statuses[status] or 0) + 1
  if limit > 0 and counter == limit then
    io.write("LIMIT_REACHED\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do agg[k] = (agg[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(agg) do table.insert(parts, string.format('"%d":%d', k, v)) end
  io.write("STATUSES {" .. table.concat(parts, ",") .. "}\n")
end
