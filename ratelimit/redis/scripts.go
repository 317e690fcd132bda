package redis

import (
	"crypto/sha1"
	"encoding/hex"
	"time"
)

// The scripts mirror ratelimit/internal/gcra line for line; keep them in
// step. Every bucket is a hash {a: Unix ms, r: request level, t: token
// level} with levels in unit·ms. Lua numbers are doubles: every value below
// stays under 2^53 (see gcra.MaxLevel), so the arithmetic is exact.
const common = `
local W = 60000
local MAXLEVEL = 4503599627370496 -- 2^52
local SLACK = 60000 -- expire a minute after draining, see expirySlack

local function ceildiv(a, b)
  if a <= 0 then return 0 end
  local q = math.floor(a / b)
  if q * b < a then q = q + 1 end
  if (q - 1) * b >= a then q = q - 1 end
  return q
end

local function drain(level, limit, elapsed)
  if limit <= 0 or level <= 0 then return 0 end
  if elapsed <= 0 then return level end
  if elapsed >= ceildiv(level, limit) then return 0 end
  return level - elapsed * limit
end

local function need(level, limit, units)
  if limit <= 0 then return 0 end
  if units > limit then return -1 end
  local over = level - (limit - units) * W
  if over <= 0 then return 0 end
  return ceildiv(over, limit)
end

local function add(level, units)
  local d = units * W
  if d > MAXLEVEL - level then return MAXLEVEL end
  if level + d < 0 then return 0 end
  return level + d
end

local function ttl(req, rpm, tok, tpm)
  local t = 1
  if rpm > 0 then t = math.max(t, ceildiv(req, rpm)) end
  if tpm > 0 then t = math.max(t, ceildiv(tok, tpm)) end
  return t
end

local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- load returns bucket i's levels drained to now and its timestamp; a key
-- seen earlier in this call continues from that occurrence's new levels.
local seen, st = {}, {}
local function load(i, rpm, tpm)
  local j = seen[KEYS[i]]
  seen[KEYS[i]] = i
  if j then
    return drain(st[j].nr, rpm, 0), drain(st[j].nt, tpm, 0), st[j].at
  end
  local h = redis.call('HMGET', KEYS[i], 'a', 'r', 't')
  local at = tonumber(h[1])
  if not at then return 0, 0, now end
  local el = now - at
  return drain(tonumber(h[2]) or 0, rpm, el), drain(tonumber(h[3]) or 0, tpm, el), math.max(at, now)
end

local function store(i, rpm, tpm)
  local s = st[i]
  if s.nr == 0 and s.nt == 0 then
    redis.call('DEL', KEYS[i])
    return
  end
  redis.call('HSET', KEYS[i], 'a', s.at, 'r', s.nr, 't', s.nt)
  redis.call('PEXPIRE', KEYS[i], ttl(s.nr, rpm, s.nt, tpm) + SLACK)
end
`

// admitSrc: ARGV[1] is now (Unix ms, or -1 for the server clock); then
// rpm, tpm, tokens per key. It returns {allowed, then per key: request
// level, token level, request need, token need}, levels after the take if
// allowed and before it otherwise.
const admitSrc = common + `
local ok = true
for i = 1, #KEYS do
  local rpm, tpm, units = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local req, tok, at = load(i, rpm, tpm)
  local s = {req = req, tok = tok, nr = req, nt = tok, at = at}
  s.needr, s.needt = need(req, rpm, 1), need(tok, tpm, units)
  if s.needr ~= 0 or s.needt ~= 0 then ok = false end
  if rpm > 0 then s.nr = add(req, 1) end
  if tpm > 0 then s.nt = add(tok, units) end
  st[i] = s
end
local out = {0}
if ok then out[1] = 1 end
for i = 1, #KEYS do
  local s = st[i]
  if ok then
    store(i, tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]))
    table.insert(out, s.nr); table.insert(out, s.nt); table.insert(out, 0); table.insert(out, 0)
  else
    table.insert(out, s.req); table.insert(out, s.tok); table.insert(out, s.needr); table.insert(out, s.needt)
  end
end
return out
`

// correctSrc: ARGV[1] is now; then rpm, tpm, token delta per key.
const correctSrc = common + `
for i = 1, #KEYS do
  local rpm, tpm, delta = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local req, tok, at = load(i, rpm, tpm)
  local s = {nr = req, nt = tok, at = at}
  if tpm > 0 then s.nt = add(tok, delta) end
  st[i] = s
  store(i, rpm, tpm)
end
return 0
`

// expirySlack is how long after draining a bucket's key expires. Expiry
// runs on the Redis server's clock while the levels may run on the
// caller's (Options.Now); the slack keeps a caller clock that lags the
// server's by up to a minute from losing a bucket that is not yet empty to
// it. An expired key is always an empty bucket, so the slack only costs
// memory.
const expirySlack = time.Minute

// script is Lua source and its SHA-1, for EVALSHA.
type script struct{ src, sha string }

func newScript(src string) script {
	sum := sha1.Sum([]byte(src))
	return script{src: src, sha: hex.EncodeToString(sum[:])}
}
