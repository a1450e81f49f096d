-- The Lua test suite: ./qscope run tests/lua/run.lua [FILTER]
-- Runs every tests/lua/test_*.lua (FILTER: only tests whose "file: name"
-- contains it) from the project root, and ends with "N passed, N failed";
-- the exit status is 1 when a test failed. Tests that need ../shared skip
-- without it. QSCOPE=path picks the binary the CLI comparisons run.
local dir = (arg and arg[0] or ''):match('^(.*)/[^/]*$') or '.'
package.path = dir .. '/?.lua;' .. package.path
local T = require 'harness'
T.set_filter(arg[1])

local files = {}
local p = io.popen('ls ' .. T.shquote(dir))
for name in p:lines() do
  if name:match('^test_.*%.lua$') then files[#files + 1] = name end
end
p:close()
table.sort(files)

local t0 = T.clock()
for _, name in ipairs(files) do
  local chunk, err = loadfile(dir .. '/' .. name)
  T.group(name:match('^test_(.*)%.lua$'))
  if not chunk then
    T.test('load', function() error(err) end)
  else
    local ok, e = pcall(chunk, T)
    if not ok then T.test('top level', function() error(e) end) end
  end
end
print(('%.1f s'):format(T.clock() - t0))
T.finish()
