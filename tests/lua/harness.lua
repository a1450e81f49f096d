-- The Lua tests' harness: test(), assertions, the shared fixtures, a shell
-- helper and a small JSON reader (for the CLI's --json output and the
-- reference files). Used by run.lua and every test_*.lua.
local T = {passed = 0, failed = 0, skipped = 0, failures = {}}

T.qscope = os.getenv('QSCOPE') or './qscope'
T.model = 'models/opt-mini'
T.eval = 'models/opt-mini/eval.txt'
T.calib = 'models/opt-mini/calib.txt'

local filter
function T.set_filter(f) filter = f end

local function clock()
  local p = io.popen('date +%s.%N')
  local t = tonumber(p:read('l'))
  p:close()
  return t or os.time()
end
T.clock = clock

local group = ''
function T.group(name) group = name end

-- test(name, fn): run fn; an error fails it, T.skip() skips it
function T.test(name, fn)
  local full = group ~= '' and (group .. ': ' .. name) or name
  if filter and not full:find(filter, 1, true) then return end
  local t0 = clock()
  local ok, err = xpcall(fn, function(e)
    if type(e) == 'table' and e.skip then return e end
    return debug.traceback(tostring(e), 2)
  end)
  local dt = clock() - t0
  if ok then
    T.passed = T.passed + 1
    print(('  ok    %-60s %6.2f s'):format(full, dt))
  elseif type(err) == 'table' and err.skip then
    T.skipped = T.skipped + 1
    print(('  skip  %-60s (%s)'):format(full, err.skip))
  else
    T.failed = T.failed + 1
    T.failures[#T.failures + 1] = full
    print(('  FAIL  %s\n%s'):format(full, err))
  end
  collectgarbage()
end

function T.skip(reason) error({skip = reason}, 0) end

local function show(v)
  if type(v) == 'string' then return ('%q'):format(v) end
  return tostring(v)
end

function T.check(cond, msg, ...)
  if not cond then error((msg or 'check failed'):format(...), 2) end
  return cond
end

function T.eq(got, want, what)
  if got ~= want then error(('%s: expected %s, got %s'):format(what or 'value', show(want), show(got)), 2) end
end

-- |got - want| <= tol * max(1, |want|)
function T.near(got, want, tol, what)
  if type(got) ~= 'number' or math.abs(got - want) > tol * math.max(1, math.abs(want)) then
    error(('%s: expected %.17g (tolerance %g), got %s'):format(what or 'value', want, tol, show(got)), 2)
  end
end

-- The call must raise an error whose message contains `text` (plain).
function T.raises(text, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error(('expected an error containing %q, got none'):format(text), 2) end
  err = tostring(err)
  if not err:find(text, 1, true) then error(('expected an error containing %q, got %q'):format(text, err), 2) end
  return err
end

-- An expected failure: the call returns nil, msg with `text` in msg.
function T.fails(text, fn, ...)
  local ok, a, b = pcall(fn, ...)
  if not ok then error(('expected nil, msg; it raised %q'):format(tostring(a)), 2) end
  if a ~= nil then error(('expected nil, msg; got %s'):format(show(a)), 2) end
  if type(b) ~= 'string' or not b:find(text, 1, true) then
    error(('expected a message containing %q, got %s'):format(text, show(b)), 2)
  end
  return b
end

-- Path of a file in ../shared (or $QS_SHARED); skips the test without it.
function T.shared(rel)
  for _, root in ipairs({os.getenv('QS_SHARED') or '', '../shared', '../../shared'}) do
    if root ~= '' then
      local p = root .. '/' .. rel
      local f = io.open(p, 'rb')
      if f then f:close() return p end
    end
  end
  T.skip('../shared not found (' .. rel .. ')')
end

function T.read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('a')
  f:close()
  return s
end

function T.write(path, s)
  local f = assert(io.open(path, 'wb'))
  f:write(s)
  f:close()
  return path
end

local tmpn = 0
function T.tmp(suffix)
  tmpn = tmpn + 1
  return ('%s/qsl-test-%d-%d%s'):format(os.getenv('TMPDIR') or '/tmp', os.time() % 100000, tmpn, suffix or '')
end

-- Run a shell command: its output (stdout, or both with both = true) and exit status.
function T.sh(cmd, both)
  local p = io.popen(cmd .. (both and ' 2>&1' or '') .. '; echo "__rc=$?"')
  local out = p:read('a')
  p:close()
  local body, rc = out:match('^(.*)__rc=(%d+)%s*$')
  return body, tonumber(rc)
end

function T.shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- float32 array from a little-endian file
function T.f32(path)
  local s = T.read(path)
  local n = #s // 4
  local out = {}
  for i = 1, n do out[i] = string.unpack('<f', s, 4 * i - 3) end
  return out
end

-- ---- a small JSON reader ----
local function decode(s)
  local pos = 1
  local function ws() pos = s:find('[^ \t\r\n]', pos) or #s + 1 end
  local value
  local function str()
    local out, i = {}, pos + 1
    while true do
      local c = s:sub(i, i)
      if c == '"' then pos = i + 1 return table.concat(out) end
      if c == '\\' then
        local e = s:sub(i + 1, i + 1)
        local map = {n = '\n', t = '\t', r = '\r', b = '\b', f = '\f', ['"'] = '"', ['\\'] = '\\', ['/'] = '/'}
        if e == 'u' then
          local cp = tonumber(s:sub(i + 2, i + 5), 16)
          i = i + 6
          if cp >= 0xD800 and cp < 0xDC00 and s:sub(i, i + 1) == '\\u' then
            local lo = tonumber(s:sub(i + 2, i + 5), 16)
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            i = i + 6
          end
          out[#out + 1] = utf8.char(cp)
        else
          out[#out + 1] = assert(map[e], 'bad escape')
          i = i + 2
        end
      else
        out[#out + 1] = c
        i = i + 1
      end
      assert(i <= #s + 1, 'unterminated string')
    end
  end
  -- the items of an object or array after its opening bracket: item()
  -- reads one; they are separated by ',' up to `close`; returns t
  local function items(close, t, item)
    pos = pos + 1
    ws()
    if s:sub(pos, pos) == close then pos = pos + 1 return t end
    while true do
      item()
      ws()
      local d = s:sub(pos, pos)
      pos = pos + 1
      if d == close then return t end
      assert(d == ',', 'expected , or ' .. close)
    end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == '{' then
      local t = {}
      return items('}', t, function()
        ws()
        local k = str()
        ws()
        assert(s:sub(pos, pos) == ':', 'expected :')
        pos = pos + 1
        t[k] = value()
      end)
    elseif c == '[' then
      local t = {}
      return items(']', t, function() t[#t + 1] = value() end)
    elseif c == '"' then
      return str()
    elseif s:sub(pos, pos + 3) == 'true' then pos = pos + 4 return true
    elseif s:sub(pos, pos + 4) == 'false' then pos = pos + 5 return false
    elseif s:sub(pos, pos + 3) == 'null' then pos = pos + 4 return nil
    else
      local num = s:match('^-?%d+%.?%d*[eE]?[-+]?%d*', pos)
      assert(num and #num > 0, 'bad JSON at ' .. pos)
      pos = pos + #num
      return tonumber(num)
    end
  end
  return value()
end
T.json = decode

-- Run the CLI with --json and decode its output.
function T.cli_json(args)
  local out, rc = T.sh(T.qscope .. ' ' .. args .. ' 2>/dev/null')
  if rc ~= 0 then error(('%s %s: exit %d'):format(T.qscope, args, rc), 2) end
  return decode(out)
end

function T.finish()
  if #T.failures > 0 then print('failed: ' .. table.concat(T.failures, ', ')) end
  local skipped = T.skipped > 0 and (', %d skipped'):format(T.skipped) or ''
  print(('%d passed, %d failed%s'):format(T.passed, T.failed, skipped))
  io.stdout:flush()
  os.exit(T.failed == 0 and 0 or 1)
end

return T
