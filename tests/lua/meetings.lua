--[[
Reference implementation of CRM.MEETINGS in Lua, for the default key names.

The seed's proof of concept, corrected: it uses the installation id, writes no temporary
keys (the seed's sampleset1/sampleset2 grew across calls), reads the user's clients once,
returns an array (total first, then {id, details} pairs) instead of one glued string, and
orders rows by the module's rules. It is the benchmark baseline and the tests' oracle.

ARGV: installation, user, sort field, ASC|DESC, offset, count, then field/value pairs: a
FILTER; an EXCLUDE where the field is written with a leading '-'; a RANGE where it is
written with a leading '~' and the value is "min max" (numbers or -inf/+inf, a leading '('
for an exclusive bound, as ZRANGEBYSCORE takes them); a FIELD of CRM.FACETS where it is
written with a leading '#' (then the reply is CRM.FACETS's). An offset written '@<id>' is
AFTER <id>.
]]

local installation, user, sort_field = ARGV[1], ARGV[2], ARGV[3]
local descending = ARGV[4] == 'DESC'
local after = string.match(ARGV[5], '^@(.*)$')
local offset, count = tonumber(ARGV[5]) or 0, tonumber(ARGV[6])

-- Candidates: a union of value sets per field, intersected across fields.
local value_keys, fields, excluded_keys, ranges = {}, {}, {}, {}
local facet_values, facet_fields = {}, {}
for i = 7, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if string.sub(field, 1, 1) == '#' then
    local name = string.sub(field, 2)
    if not facet_values[name] then
      facet_values[name] = {}
      facet_fields[#facet_fields + 1] = name
    end
    table.insert(facet_values[name], value)
  elseif string.sub(field, 1, 1) == '~' then
    local min, max = string.match(value, '^(%S+) (%S+)$')
    ranges[#ranges + 1] = { field = string.sub(field, 2), min = min, max = max }
  elseif string.sub(field, 1, 1) == '-' then
    excluded_keys[#excluded_keys + 1] = 'meeting_' .. string.sub(field, 2) .. ':' .. value .. '_ins_' .. installation
  else
    if not value_keys[field] then
      value_keys[field] = {}
      fields[#fields + 1] = field
    end
    table.insert(value_keys[field], 'meeting_' .. field .. ':' .. value .. '_ins_' .. installation)
  end
end
local candidates
if #fields == 0 then
  candidates = redis.call('SMEMBERS', 'meetings_ins_' .. installation)
else
  local hits = {}
  for _, field in ipairs(fields) do
    for _, id in ipairs(redis.call('SUNION', unpack(value_keys[field]))) do
      hits[id] = (hits[id] or 0) + 1
    end
  end
  candidates = {}
  for id, n in pairs(hits) do
    if n == #fields then candidates[#candidates + 1] = id end
  end
end

-- EXCLUDE: a candidate in any excluded set is dropped.
if #excluded_keys > 0 then
  local excluded = {}
  for _, id in ipairs(redis.call('SUNION', unpack(excluded_keys))) do
    excluded[id] = true
  end
  local kept = {}
  for _, id in ipairs(candidates) do
    if not excluded[id] then kept[#kept + 1] = id end
  end
  candidates = kept
end

-- RANGE: the meeting's score in the field's sorted set lies in the range.
local function bound(text)
  local exclusive = string.sub(text, 1, 1) == '('
  if exclusive then text = string.sub(text, 2) end
  local value
  if text == '-inf' then
    value = -math.huge
  elseif text == '+inf' then
    value = math.huge
  else
    value = tonumber(text)
  end
  return value, exclusive
end
for _, range in ipairs(ranges) do
  local min, min_exclusive = bound(range.min)
  local max, max_exclusive = bound(range.max)
  local kept = {}
  for _, id in ipairs(candidates) do
    local score = tonumber(redis.call('ZSCORE', 'meeting_' .. range.field, 'meeting:' .. id) or '')
    if score
        and (score > min or (not min_exclusive and score == min))
        and (score < max or (not max_exclusive and score == max)) then
      kept[#kept + 1] = id
    end
  end
  candidates = kept
end

-- Client security: the meeting's hash must name a client the user sees.
local visible_clients = {}
for _, client in ipairs(redis.call('SMEMBERS', 'clients_for_user:' .. user)) do
  visible_clients[client] = true
end

-- Days since 1970-01-01 of a proleptic Gregorian date.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local year_of_era = y - era * 400
  local day_of_year = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local day_of_era = year_of_era * 365 + math.floor(year_of_era / 4)
    - math.floor(year_of_era / 100) + day_of_year
  return era * 146097 + day_of_era - 719468
end

local function days_in_month(y, m)
  if m == 2 then
    if y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then return 29 end
    return 28
  end
  if m == 4 or m == 6 or m == 9 or m == 11 then return 30 end
  return 31
end

-- `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time, as Unix seconds; nil otherwise.
local function date_seconds(raw)
  local y, m, d, rest = string.match(raw, '^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$')
  if not y then return nil end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m < 1 or m > 12 or d < 1 or d > days_in_month(y, m) then return nil end
  local seconds = days_from_civil(y, m, d) * 86400
  if rest == '' then return seconds end
  local hh, mm, ss, fraction, zone = string.match(rest, '^[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$')
  if not hh or fraction == '.' then return nil end
  hh, mm, ss = tonumber(hh), tonumber(mm), tonumber(ss)
  if hh > 23 or mm > 59 or ss > 60 then return nil end
  local offset = 0
  if zone ~= 'Z' and zone ~= 'z' then
    local sign, oh, om = string.match(zone, '^([%+%-])(%d%d):(%d%d)$')
    if not sign or tonumber(oh) > 23 or tonumber(om) > 59 then return nil end
    offset = (tonumber(oh) * 60 + tonumber(om)) * 60
    if sign == '-' then offset = -offset end
  end
  return seconds + hh * 3600 + mm * 60 + ss - offset + (tonumber('0' .. fraction) or 0)
end

-- A hash field's sort value: a plain decimal number, else a date (the module's rule).
local function sort_number(raw)
  if not raw then return nil end
  if string.find(raw, '^[%d%+%-%.eE]+$') and tonumber(raw) then return tonumber(raw) end
  return date_seconds(raw)
end

local sort_key = 'meeting_' .. sort_field
local has_sort_index = redis.call('EXISTS', sort_key) == 1
local function sort_value(id, raw)
  if has_sort_index then
    return tonumber(redis.call('ZSCORE', sort_key, 'meeting:' .. id) or '')
  end
  return sort_number(raw)
end

-- AFTER: the meeting must exist; its current sort value places the page.
local cursor
if after then
  local hash = redis.call('HMGET', 'meeting:' .. after, 'clientid', sort_field)
  if redis.call('EXISTS', 'meeting:' .. after) == 0 then
    return redis.error_reply("ERR AFTER: meeting '" .. after .. "' does not exist")
  end
  cursor = { id = after, value = sort_value(after, hash[2]) }
end

local rows = {}
for _, id in ipairs(candidates) do
  local hash = redis.call('HMGET', 'meeting:' .. id, 'clientid', sort_field)
  if hash[1] and visible_clients[hash[1]] then
    rows[#rows + 1] = { id = id, value = sort_value(id, hash[2]) }
  end
end

-- Byte order; Lua's string < follows the server's locale, so compare bytes by hand.
local function bytes_less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function is_integer(id)
  return id == '0' or string.find(id, '^%-?[1-9]%d*$') ~= nil
end

-- Canonical integers first in numeric order (any length), then other ids in byte order.
local function id_less(a, b)
  local a_int, b_int = is_integer(a), is_integer(b)
  if a_int ~= b_int then return a_int end
  if not a_int then return bytes_less(a, b) end
  local a_neg, b_neg = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if a_neg ~= b_neg then return a_neg end
  local a_digits = a_neg and string.sub(a, 2) or a
  local b_digits = b_neg and string.sub(b, 2) or b
  if a_digits == b_digits then return false end
  local smaller
  if #a_digits ~= #b_digits then
    smaller = #a_digits < #b_digits
  else
    smaller = bytes_less(a_digits, b_digits)
  end
  if a_neg then return not smaller end
  return smaller
end

local function row_less(x, y)
  if x.value and y.value then
    if x.value ~= y.value then
      if descending then return x.value > y.value end
      return x.value < y.value
    end
  elseif x.value then
    return true
  elseif y.value then
    return false
  end
  return id_less(x.id, y.id)
end
table.sort(rows, row_less)

-- CRM.FACETS: the matches in each named value's set.
if #facet_fields > 0 then
  local reply = { #rows }
  for _, field in ipairs(facet_fields) do
    local counts = {}
    for _, value in ipairs(facet_values[field]) do
      local key = 'meeting_' .. field .. ':' .. value .. '_ins_' .. installation
      local count = 0
      for _, row in ipairs(rows) do
        count = count + redis.call('SISMEMBER', key, row.id)
      end
      counts[#counts + 1] = value
      counts[#counts + 1] = count
    end
    reply[#reply + 1] = { field, counts }
  end
  return reply
end

-- AFTER: the page starts at the first row ranking after the cursor.
if cursor then
  offset = #rows
  for i, row in ipairs(rows) do
    if row_less(cursor, row) then
      offset = i - 1
      break
    end
  end
end

local reply = { #rows }
for i = offset + 1, math.min(offset + count, #rows) do
  local id = rows[i].id
  reply[#reply + 1] = { id, redis.call('HGET', 'meeting:' .. id, 'details') }
end
return reply
