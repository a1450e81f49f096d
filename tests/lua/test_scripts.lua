-- Every scripts/*.lua runs to the end with small arguments, and documents
-- itself (--help prints its header).
local T = ...

local small = '--windows 1 --calib-windows 2 --ctx 128'
local args = {['outliers.lua'] = '--calib-windows 2 --ctx 128'}
local expect = {
  ['outliers.lua'] = 'Outlier dimensions',
  ['int8_threshold.lua'] = 'hidden dims >= tau',
  ['rptq_clusters.lua'] = 'W4A4',
  ['slice_sweep.lua'] = 'params %',
  ['paper_tables.lua'] = 'SliceGPT: perplexity and parameters',
  ['tour.lua'] = '7. The same prompt, three ways',
}

local scripts = {}
local p = io.popen('ls scripts')
for name in p:lines() do if name:match('%.lua$') then scripts[#scripts + 1] = name end end
p:close()
table.sort(scripts)

T.test('the six scripts are there', function()
  for name in pairs(expect) do
    local f = io.open('scripts/' .. name)
    T.check(f, 'scripts/%s is missing', name)
    f:close()
  end
  T.check(#scripts >= 6, '%d scripts', #scripts)
end)

for _, name in ipairs(scripts) do
  T.test(name .. ' runs with small arguments', function()
    local out, rc = T.sh(('%s run scripts/%s %s'):format(T.qscope, name, args[name] or small), true)
    T.eq(rc, 0, name .. ' exit status; output:\n' .. out)
    T.check(expect[name], '%s has no expected output: add a line it must print to expect', name)
    T.check(out:find(expect[name] or '\0', 1, true), '%s output lacks %q:\n%s', name, expect[name] or '', out)
  end)
  T.test(name .. ' --help prints its header', function()
    local out, rc = T.sh(('%s run scripts/%s --help'):format(T.qscope, name))
    T.eq(rc, 0)
    T.check(out:find('^' .. name:gsub('%p', '%%%0')), 'header starts with the name: %q', out:sub(1, 80))
    T.check(out:find('usage: qscope run scripts/' .. name, 1, true), 'usage line')
  end)
end
