-- rptq_clusters.lua: RPTQ perplexity for each cluster count g and bit width.
--
-- RPTQ (Yuan et al. 2023) clusters the channels of each activation by
-- their calibrated (min, max) with k-means, reorders them so each cluster
-- is contiguous, and gives every cluster its own scale and zero point. One
-- cluster is plain per-tensor quantization; more clusters follow the
-- channels' ranges more closely. This prints a table of perplexities with a
-- row per g and a column per setting (W4A8: 4-bit weights, 8-bit
-- activations; ...KV: only the KV cache at that width), the fp32 and
-- round-to-nearest baselines, and a plot of perplexity against g.
-- Calibration runs once and every variant reuses it.
--
-- usage: qscope run scripts/rptq_clusters.lua [--model DIR] [--data FILE]
--            [--windows N] [--ctx N] [--calib FILE] [--calib-windows N]
--            [--g 1,2,4,...] [--settings W4A8,W4A6,...] [--plots=false]
-- defaults: the bundled model, eval.txt and calib.txt beside it, 8 windows
-- of 512 tokens, 16 calibration windows, g 1,2,4,8,16,32,64, settings
-- W4A16,W4A8,W4A6,W4A4.
local qs = require 'qscope'
local o = qs.args(arg, {model = '', data = '', windows = 8, ctx = 512, calib = '', calib_windows = 16,
                        g = '1,2,4,8,16,32,64', settings = 'W4A16,W4A8,W4A6,W4A4', plots = true})

local function list(s, num)
  local t = {}
  for w in s:gmatch('[^,]+') do t[#t + 1] = num and assert(tonumber(w), 'bad number ' .. w) or w end
  return t
end
local gs, settings = list(o.g, true), list(o.settings)

local m = assert(qs.load(o.model ~= '' and o.model or nil))
local ctx = math.min(o.ctx, m.info.max_pos)
local data = {file = o.data ~= '' and o.data or nil, windows = o.windows, ctx = ctx}
local st = assert(m:calibrate{file = o.calib ~= '' and o.calib or nil, windows = o.calib_windows, ctx = ctx,
                              per_token = false})
local fp32 = assert(m:ppl(data))
print(('%s: fp32 ppl %.4f (%d windows of %d); calibration %s'):format(m.info.path, fp32, o.windows, ctx, st.source))
print()

local header = {'g'}
for _, s in ipairs(settings) do header[#header + 1] = s end
local rows, errors, series = {header}, {}, {}
for i = 1, #settings do series[i] = {} end
for _, g in ipairs(gs) do
  local row = {math.tointeger(g) or g}
  for i, setting in ipairs(settings) do
    local v, err = m:variant(('rptq:%s,g=%d'):format(setting, g), {stats = st})
    local p
    if v then
      p, err = v:ppl(data)
      v:close()
    end
    if err and #errors < 8 then errors[#errors + 1] = err end
    row[#row + 1] = p or 'n/a'
    series[i][#series[i] + 1] = p or 0 / 0
  end
  rows[#rows + 1] = row
  io.stdout:flush()
end
-- the per-tensor round-to-nearest baseline at the same widths
local base = {'rtn'}
for _, setting in ipairs(settings) do
  local w, a, kv = setting:match('^[Ww](%d+)[Aa](%d+)(.*)$')
  local spec = kv ~= '' and ('rtn:w=%s,kv=%s,a=16,act=tensor'):format(w, a)
               or (tonumber(a) < 16 and ('rtn:w=%s,a=%s,act=tensor'):format(w, a) or ('rtn:w=%s'):format(w))
  local v, err = m:variant(spec, {stats = st})
  local p = v and v:ppl(data)
  if v then v:close() end
  base[#base + 1] = p or 'n/a'
  if err and #errors < 8 then errors[#errors + 1] = err end
end
rows[#rows + 1] = base
io.write(qs.table(rows))
print(('(rtn: round-to-nearest, one scale per tensor for activations; fp32 %.4f)'):format(fp32))
for _, e in ipairs(errors) do print('  ' .. e) end

if o.plots and #gs >= 2 then
  print()
  local xs = {}
  for i, g in ipairs(gs) do xs[i] = math.log(g, 2) end
  qs.plot.line(series, {x = xs, names = settings, logy = true, hline = fp32, height = 16,
                        title = 'RPTQ perplexity against log2(clusters); fp32 as the horizontal line',
                        xlabel = 'log2 g', ylabel = 'ppl (log scale)'})
end
