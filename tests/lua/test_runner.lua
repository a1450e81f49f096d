-- `qscope run`: exit statuses, arguments, errors with tracebacks, Ctrl-C;
-- qscope.so in stock lua5.4; the C API a host (the workbench) embeds.
local T = ...

local function script(body) return T.write(T.tmp('.lua'), body) end

T.test('exit status, arg and ...', function()
  local f = script([[
print(arg[0]:match('[^/]*$'), arg[1], arg[2], select('#', ...), ...)
print(arg[-1])
]])
  local out, rc = T.sh(T.qscope .. ' run ' .. f .. ' one two')
  T.eq(rc, 0)
  local name = f:match('[^/]*$')
  T.eq(out, name .. '\tone\ttwo\t2\tone\ttwo\nqscope\n')
  local ex = script('os.exit(3)')
  T.eq(select(2, T.sh(T.qscope .. ' run ' .. ex)), 3, 'os.exit status')
  os.remove(f)
  os.remove(ex)
end)

T.test('errors: exit 1 with a traceback', function()
  local f = script('local function inner() error("boom") end\nlocal function outer() inner() end\nouter()\n')
  local out, rc = T.sh(T.qscope .. ' run ' .. f, true)
  T.eq(rc, 1)
  T.check(out:find('qscope: ' .. f .. ':1: boom', 1, true), 'message %q', out)
  T.check(out:find('stack traceback:', 1, true) and out:find("in upvalue 'inner'", 1, true), 'traceback %q', out)
  local syn = script('this is not lua')
  local o2, rc2 = T.sh(T.qscope .. ' run ' .. syn, true)
  T.eq(rc2, 1)
  T.check(o2:find('syntax error', 1, true), o2)
  local o3, rc3 = T.sh(T.qscope .. ' run /no/such/script.lua', true)
  T.eq(rc3, 1)
  T.check(o3:find('cannot open /no/such/script.lua', 1, true), o3)
  local o4, rc4 = T.sh(T.qscope .. ' run', true)
  T.eq(rc4, 2)
  T.check(o4:find('usage: qscope run FILE.lua', 1, true), o4)
  local o5, rc5 = T.sh('echo "print(6 * 7)" | ' .. T.qscope .. ' run -')
  T.eq(o5, '42\n')
  T.eq(rc5, 0)
  os.remove(f)
  os.remove(syn)
end)

-- Run a script in the background, send SIGINT after `after` seconds; returns
-- exit status, stderr and seconds from the signal to the exit.
local function interrupt(body, after)
  local f = script(body)
  local err = T.tmp('.err')
  local out = T.sh(('%s run %s 2>%s & p=$!; sleep %s; date +%%s.%%N; kill -INT $p; wait $p; echo "rc=$?"; date +%%s.%%N')
    :format(T.qscope, f, err, after))
  local t0, rc, t1 = out:match('([%d.]+)\nrc=(%d+)\n([%d.]+)')
  local e = T.read(err)
  os.remove(f)
  os.remove(err)
  return tonumber(rc), e, tonumber(t1) - tonumber(t0), out
end

T.test('Ctrl-C interrupts a long perplexity within a second: exit 130', function()
  local rc, err, dt, out = interrupt([[
local m = assert(qscope.load())
print('started')
local p = m:ppl{}   -- every window of eval.txt: many seconds
print('not reached', p)
]], 1)
  T.eq(rc, 130, 'exit status')
  T.check(err:find('qscope: interrupted', 1, true), 'stderr %q', err)
  T.check(not out:find('not reached', 1, true), 'the call did not return')
  T.check(dt < 1.5, 'stopped %.2f s after the signal', dt)
end)

T.test('Ctrl-C interrupts calibration and plain Lua loops', function()
  local rc, err, dt = interrupt([[
local m = assert(qscope.load())
m:calibrate{windows = 1000}
]], 1)
  T.eq(rc, 130)
  T.check(dt < 1.5, 'calibration stopped %.2f s after the signal', dt)
  local rc2, err2, dt2 = interrupt('while true do end', 0.5)
  T.eq(rc2, 130, 'a busy Lua loop')
  T.check(dt2 < 1, 'loop stopped %.2f s after the signal', dt2)
  -- a script may catch it with pcall (and then go on)
  local rc3, err3 = interrupt([[
local m = assert(qscope.load())
local ok, e = pcall(m.ppl, m, {})
io.stderr:write('caught: ', tostring(e), '\n')
]], 1)
  T.eq(rc3, 0)
  T.check(err3:find('caught: interrupted', 1, true), err3)
end)

T.test('qscope.so in stock lua5.4', function()
  local lua = T.sh('command -v lua5.4'):gsub('%s+$', '')
  if lua == '' then T.skip('lua5.4 not installed') end
  local f = io.open('qscope.so', 'rb')
  if not f then T.skip('qscope.so not built') end
  f:close()
  local code = "local qs = require 'qscope'; local m = assert(qs.load('" .. T.model .. "')); print(('%.12f'):format(m:ppl{windows = 2, ctx = 256})); print(qs.plot.bars({1, 2}, {print = false}) ~= nil)"
  -- a sanitized build (make CFLAGS=-fsanitize=...) needs its runtime preloaded into stock Lua
  local pre = os.getenv('QSL_LUA_PRELOAD') and ('LD_PRELOAD=' .. os.getenv('QSL_LUA_PRELOAD') .. ' ') or ''
  local out, rc = T.sh(pre .. "LUA_CPATH='./?.so;;' " .. lua .. ' -e ' .. T.shquote(code), true)
  T.eq(rc, 0, out)
  local qs = require 'qscope'
  local m = assert(qs.load(T.model))
  T.eq(out, ('%.12f\ntrue\n'):format(m:ppl{windows = 2, ctx = 256}))
end)

T.test('the C API for hosts: print and plot sinks, traceback pcall', function()
  local cc = os.getenv('CC') or T.sh('command -v cc'):gsub('%s+$', '')
  if cc == '' then T.skip('no C compiler') end
  local objs = T.sh('ls build/lua/*.o 2>/dev/null'):gsub('[^\n]*qsl_run%.o\n', '')
  if objs == '' then T.skip('build/lua not built') end
  local exe = T.tmp('-embed')
  local cmd = ('%s -std=c11 -Icore -o %s tests/lua/embed.c %s build/libqscope-core.a %s $(pkg-config --cflags --libs lua5.4 openblas lapacke libcjson libutf8proc oniguruma) -lm -lpthread')
    :format(cc, exe, (objs:gsub('\n', ' ')), os.getenv('LDFLAGS') or '')
  local co, crc = T.sh(cmd, true)
  T.eq(crc, 0, co)
  local out = T.sh(exe .. ' ' .. T.shquote("print('hi', 1) io.write('x', 2) qscope.plot.scatter({1, 2, 3}, {3, 4, 5}, {title = 't', color = {5, 7, 5}, width = 30})")
    .. ' ' .. T.shquote("local function f() error('boom') end f()"))
  T.check(out:find('PLOT kind=1 title=t series=1 n=3 groups=2 [group 5] [group 7] groups: 0 1 0 width=30 height=20', 1, true), out)
  T.check(out:find('ERROR [string "local function f() error(\'boom\') end f()"]:1: boom\nstack traceback:', 1, true), out)
  T.check(out:find('LOG[hi\t1\nx2]', 1, true), out)
  T.check(out:find('STDOUT\n', 1, true) and out:find('TEXT', 1, true), 'stdout restored: %s', out)

  -- a model the host lends (the workbench's `model`): same numbers as a
  -- loaded one, and closing every Lua handle leaves it to the host
  local qs = require 'qscope'
  local m = assert(qs.load(T.model))
  local want = m:ppl{windows = 1, ctx = 128}
  out = T.sh('EMBED_MODEL=' .. T.shquote(T.model) .. ' ' .. exe .. ' '
    .. T.shquote("local v = host:variant('int8') print(host.info.params, ('%.12f'):format(host:ppl{windows = 1, ctx = 128})) host:close() print(v:memory().weight_bytes > 0)"))
  os.remove(exe)
  T.check(out:find(('LOG[%d\t%.12f\ntrue\n]'):format(m.info.params, want), 1, true), out)
  T.check(out:find(('HOST params %d\n'):format(m.info.params), 1, true), out)
end)
