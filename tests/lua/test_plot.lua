-- qs.plot.*: the text they render headless (title, size, braille or ASCII
-- per locale, legends), and their argument errors.
local T = ...
local qs = require 'qscope'

local function lines(s)
  local t = {}
  for l in (s .. ''):gmatch('([^\n]*)\n') do t[#t + 1] = l end
  return t
end

local function cols(l) return utf8.len(l) end

local function has_braille(s)
  for _, c in utf8.codes(s) do if c >= 0x2800 and c <= 0x28FF then return true end end
  return false
end

local function ascii_only(s) return not s:find('[\128-\255]') end

-- a noisy parabola
local xs, ys = {}, {}
for i = 1, 200 do xs[i] = (i - 100) / 25; ys[i] = xs[i] ^ 2 + math.sin(i) / 3 end

T.test('scatter: title, size, braille', function()
  local s = qs.plot.scatter(xs, ys, {title = 'a parabola', width = 60, height = 15, charset = 'braille', print = false})
  local l = lines(s)
  T.eq(#l, 1 + 15, 'title + height lines')
  T.check(l[1]:find('a parabola', 1, true), 'title line %q', l[1])
  for i, line in ipairs(l) do T.check(cols(line) <= 60, 'line %d is %d columns', i, cols(line)) end
  T.check(has_braille(s), 'braille dots')
  T.check(s:find('┤', 1, true) and s:find('└', 1, true), 'axes with ticks')
  T.check(not s:find('\27', 1, true), 'no ANSI colour when not printing to a terminal')
end)

T.test('scatter: ASCII', function()
  local s = qs.plot.scatter(xs, ys, {title = 'ascii', charset = 'ascii', print = false})
  local l = lines(s)
  T.eq(#l, 1 + 20, 'default height 20')
  for i, line in ipairs(l) do T.check(#line <= 72, 'line %d is %d columns (default width 72)', i, #line) end
  T.check(ascii_only(s), 'ASCII only')
  T.check(s:find('*', 1, true), 'points drawn')
  T.check(s:find('+---', 1, true), 'axis')
end)

T.test('scatter: colour groups get glyphs and a legend', function()
  local groups = {}
  for i = 1, #xs do groups[i] = xs[i] < 0 and 1 or 2 end
  local s = qs.plot.scatter(xs, ys, {title = 'groups', color = groups, group = 'cluster', charset = 'ascii', print = false})
  T.check(s:find('1 cluster 1 (99)', 1, true), 'legend for cluster 1:\n%s', s)
  T.check(s:find('2 cluster 2 (101)', 1, true), 'legend for cluster 2')
  local body = s:match('^[^\n]*\n(.*)$')
  T.check(body:find('1', 1, true) and body:find('2', 1, true), 'glyphs')
  local named = qs.plot.scatter(xs, ys, {color = groups, names = {'left', 'right'}, print = false})
  T.check(named:find('left (99)', 1, true) and named:find('right (101)', 1, true), 'names')
  -- cluster ids from st:clusters work as colours
  local m = assert(qs.load(T.model))
  local st = assert(m:calibrate{windows = 1, ctx = 128})
  local site = st:site(2, 'attn_in')
  local cl = st:clusters(2, 'attn_in', 4)
  local t = qs.plot.scatter(site.min, site.max, {title = 'layer 2 attn_in', color = cl, print = false})
  local total = 0
  for n in t:gmatch('group %d+ %((%d+)%)') do total = total + tonumber(n) end
  T.eq(total, site.dim, 'legend counts every channel')
end)

T.test('line: one and several series, log scale, markers', function()
  local s = qs.plot.line({1, 4, 9, 16, 25}, {title = 'squares', height = 10, print = false})
  T.eq(#lines(s), 11)
  local two = qs.plot.line({{1, 2, 3}, {3, 2, 1}}, {names = {'up', 'down'}, charset = 'ascii', print = false})
  T.check(two:find('* up', 1, true) and two:find('+ down', 1, true), 'series legend:\n%s', two)
  local xy = qs.plot.line({10, 20, 30}, {1, 2, 3}, {print = false, charset = 'ascii'})
  T.check(xy:find('10', 1, true) and xy:find('30', 1, true), 'x ticks from x')
  local lg = qs.plot.line({1000, 100, 10, 1, 0.1}, {logy = true, vline = 3, hline = 1, charset = 'braille', print = false})
  T.check(lg:find('1e+03', 1, true) and lg:find('0.1', 1, true), 'powers of ten:\n%s', lg)
  T.check(lg:find('┼', 1, true), 'crossing marker lines')
  local t = qs.plot.line(assert(qs.load(T.model)):logits('The')[1], {x0 = 0, print = false})
  T.eq(#lines(t), 20, 'a Tensor series')
end)

T.test('bars: labelled rows, and columns when many', function()
  local s = qs.plot.bars({15.24, 17.15, 58.05}, {labels = {'fp32', 'rtn:w=4', 'rptq'}, title = 'ppl', width = 50, print = false})
  local l = lines(s)
  T.eq(#l, 1 + 3, 'title + one line per bar')
  T.check(l[2]:find('^   fp32 │█') and l[2]:find(' 15.24$'), 'bar line %q', l[2])
  -- bars are proportional: width 50 - label 7 - value 5 - 3 separators = 35 cells for 58.05
  for i, v in ipairs({15.24, 17.15, 58.05}) do
    T.eq(select(2, l[i + 1]:gsub('█', '')), math.floor(v / 58.05 * 35 + 1e-9), 'full blocks of bar ' .. i)
  end
  T.check(l[4]:find('58.05$'), 'value')
  for _, line in ipairs(l) do T.check(cols(line) <= 50, 'width') end
  local a = qs.plot.bars({1, -2}, {charset = 'ascii', print = false})
  T.check(a:find('1 |', 1, true) and a:find('-2', 1, true) and ascii_only(a), 'ascii bars:\n%s', a)
  local many = {}
  for i = 1, 100 do many[i] = i % 7 end
  local v = qs.plot.bars(many, {height = 12, print = false, charset = 'braille'})
  T.eq(#lines(v), 12, 'vertical bars fill the height')
  T.check(v:find('█', 1, true), 'blocks')
end)

T.test('heatmap: rows, shades, scale', function()
  local mat = {}
  for r = 1, 6 do mat[r] = {} for c = 1, 100 do mat[r][c] = r * c end end
  local s = qs.plot.heatmap(mat, {title = 'r*c', x0 = 0, y0 = 0, print = false})
  local l = lines(s)
  T.eq(l[1]:match('^%s*(.-)%s*$'), 'r*c')
  T.check(s:find('█', 1, true) and s:find('░', 1, true), 'shades')
  T.check(l[2]:find('^0┤'), 'row labels from y0: %q', l[2])
  T.eq(#l, 1 + 20 + 1, 'title + height + the shade scale')
  local a = qs.plot.heatmap(mat, {charset = 'ascii', row_labels = {'a', 'b', 'c', 'd', 'e', 'f'}, height = 8, print = false})
  T.check(ascii_only(a) and a:find('@', 1, true), 'ascii shades')
  T.check(a:find('\na+', 1, true) or a:find('^a+'), 'row labels')
end)

T.test('plots follow the locale when printing', function()
  local script = T.write(T.tmp('.lua'), [[
local qs = require 'qscope'
qs.plot.scatter({1, 2, 3, 4}, {1, 4, 9, 16}, {title = 'locale', width = 40, height = 8})
]])
  local u = T.sh('LC_ALL=C.UTF-8 ' .. T.qscope .. ' run ' .. script)
  local a = T.sh('LC_ALL=C LANG=C ' .. T.qscope .. ' run ' .. script)
  local u2 = T.sh('env -u LC_ALL LC_CTYPE= LANG=en_US.UTF-8 ' .. T.qscope .. ' run ' .. script)
  T.check(has_braille(u) and u:find('locale', 1, true), 'UTF-8 locale gives braille:\n%s', u)
  T.check(has_braille(u2), 'LANG=en_US.UTF-8 gives braille')
  T.check(ascii_only(a) and a:find('locale', 1, true) and a:find('*', 1, true), 'C locale gives ASCII:\n%s', a)
  T.eq(#lines(a), 1 + 8)
  os.remove(script)
end)

T.test('headless plots print and return the text', function()
  local f = T.write(T.tmp('.lua'), "local s = qscope.plot.bars({1, 2}, {title = 'T'})\nio.write('RETURNED ', #s, '\\n')\n")
  local out = T.sh(T.qscope .. ' run - < ' .. f)
  os.remove(f)
  local printed, n = out:match('^(.*)RETURNED (%d+)\n$')
  T.check(printed, 'output %q', out)
  T.eq(#printed, tonumber(n), 'printed = returned')
end)

T.test('misuse names the argument', function()
  T.raises("bad argument #2 to 'scatter' (x has 2 values, y has 1)", function() return qs.plot.scatter({1, 2}, {1}) end)
  T.raises("bad argument #1 to 'scatter' (x: a Tensor or an array of numbers expected, got nil)", function() return qs.plot.scatter() end)
  T.raises("y: element 2 is string, not a number", function() return qs.plot.scatter({1, 2}, {1, 'a'}) end)
  T.raises("'charset' is auto, ascii or braille, not 'x'", function() return qs.plot.bars({1}, {charset = 'x'}) end)
  T.raises("'width' = 5 is out of range", function() return qs.plot.bars({1}, {width = 5}) end)
  T.raises("bad argument #2 to 'bars' (unknown option 'titel' (options: title, xlabel,", function() return qs.plot.bars({1}, {titel = 'x'}) end)
  T.raises("bad argument #3 to 'scatter' (unknown option 'colour' (options: title,", function() return qs.plot.scatter({1}, {1}, {colour = {1}}) end)
  T.raises("'color' has 1 values for 2 points", function() return qs.plot.scatter({1, 2}, {1, 2}, {color = {1}}) end)
  T.raises("bad argument #1 to 'heatmap' (row 2 has 1 values, row 1 has 2)", function() return qs.plot.heatmap({{1, 2}, {3}}) end)
  T.raises("a 1-D Tensor expected", function() return qs.plot.bars(assert(qs.load(T.model)):logits('x')) end)
end)
