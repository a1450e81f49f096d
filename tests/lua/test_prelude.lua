-- The module's Lua half: qs.args, qs.usage, qs.table (qs.compare is
-- tested with the variants).
local T = ...
local qs = require 'qscope'

T.test('args: options by the type of their default, positionals', function()
  local d = {model = 'models/opt-mini', windows = 8, tau = 6.0, quiet = false, sites = 'mlp_in'}
  local o = qs.args({[0] = 's.lua', '--windows', '4', '--tau=3.5', '--quiet', 'extra', '--sites=attn_in', 'more'}, d)
  T.eq(o.windows, 4)
  T.eq(o.tau, 3.5)
  T.eq(o.quiet, true)
  T.eq(o.sites, 'attn_in')
  T.eq(o.model, 'models/opt-mini', 'default kept')
  T.eq(o[1], 'extra')
  T.eq(o[2], 'more')
  T.eq(d.windows, 8, 'defaults untouched')
  T.eq(qs.args({'--quiet=false'}, d).quiet, false)
  T.eq(qs.args({'--calib-windows', '2'}, {calib_windows = 32}).calib_windows, 2, 'dashes are underscores')
  T.eq(qs.args(nil, {a = 1}).a, 1)
end)

T.test('args: errors', function()
  local d = {windows = 8, model = 'x'}
  T.raises("unknown option '--nope' (options: --model --windows)", function() return qs.args({'--nope'}, d) end)
  T.raises("option '--windows' expects a number, got 'many'", function() return qs.args({'--windows', 'many'}, d) end)
  T.raises("option '--model' needs a value", function() return qs.args({'--model'}, d) end)
  T.raises("bad argument #2 to 'args' (table expected, got string)", function() return qs.args({}, 'x') end)
end)

T.test('usage and --help print the script header', function()
  local f = T.write(T.tmp('.lua'), '#!/usr/bin/env qscope\n-- demo.lua: a demo\n--\n-- usage: qscope run demo.lua [--n N]\nlocal qs = require "qscope"\nlocal o = qs.args(arg, {n = 1})\nprint("n", o.n)\n')
  local out, rc = T.sh(T.qscope .. ' run ' .. f .. ' --help')
  T.eq(rc, 0)
  T.eq(out, 'demo.lua: a demo\n\nusage: qscope run demo.lua [--n N]\n')
  T.eq(T.sh(T.qscope .. ' run ' .. f .. ' --n 5'), 'n\t5\n')
  -- a bad option is a usage error: one line naming the script, exit 2, no traceback
  local o2, rc2 = T.sh(T.qscope .. ' run ' .. f .. ' --bad', true)
  T.eq(rc2, 2)
  T.eq(o2, "qscope: " .. f .. ": unknown option '--bad' (options: --n)\n")
  local o3, rc3 = T.sh(T.qscope .. ' run ' .. f .. ' --n lots', true)
  T.eq(rc3, 2)
  T.eq(o3, "qscope: " .. f .. ": option '--n' expects a number, got 'lots'\n")
  os.remove(f)
end)

T.test('table: aligned columns', function()
  local s = qs.table{{'variant', 'ppl', 'bytes'}, {'fp32', 15.23837, 14218752}, {'rtn:w=4', 17.1, 4970496}, {'int8', nil, 'n/a'}}
  T.eq(s, table.concat({
    'variant      ppl     bytes',
    '-------  -------  --------',
    'fp32     15.2384  14218752',
    'rtn:w=4  17.1000   4970496',
    'int8                   n/a',
  }, '\n') .. '\n')
  T.eq(qs.table{{'a'}}, 'a\n-\n')
  T.raises("bad argument #1 to 'table' (array of rows expected", function() return qs.table{1} end)
end)
