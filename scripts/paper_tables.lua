-- paper_tables.lua: the shapes of the three papers' main tables, on any
-- model and text.
--
--   RPTQ (Yuan et al. 2023, table 2): perplexity at W4A16, W4A8, W4A4,
--     W4A4KV, W4A3KV and W3A3KV (W bits of weights, A of activations; KV:
--     only the key/value cache at that width), with the weight and KV-cache
--     memory of each setting.
--   SliceGPT (Ashkboos et al. 2024, table 1): perplexity and parameters of
--     the dense model and of 10%, 20%, 25% and 30% slicing.
--   LLM.int8() (Dettmers et al. 2022, table 1 / figure 1): fp32 against
--     8-bit absmax (one scale per tensor), vector-wise (per row and
--     per token) and vector-wise with the mixed-precision decomposition.
--
-- The papers report WikiText-2 perplexity of large models; here the
-- numbers are whatever model and text you give, in the same layout. A
-- setting that cannot be built shows n/a and the reason below the table.
--
-- usage: qscope run scripts/paper_tables.lua [--model DIR] [--data FILE]
--            [--windows N] [--ctx N] [--calib FILE] [--calib-windows N]
--            [--only rptq,slice,int8]
-- defaults: the bundled model, eval.txt and calib.txt beside it, 16 windows
-- of 512 tokens, 32 calibration windows, all three tables.
local qs = require 'qscope'
local o = qs.args(arg, {model = '', data = '', windows = 16, ctx = 512, calib = '', calib_windows = 32,
                        only = 'rptq,slice,int8'})

local m = assert(qs.load(o.model ~= '' and o.model or nil))
local ctx = math.min(o.ctx, m.info.max_pos)
local data = {file = o.data ~= '' and o.data or nil, windows = o.windows, ctx = ctx}
local calib = {file = o.calib ~= '' and o.calib or nil, windows = o.calib_windows, ctx = ctx}
local want = {}
for w in o.only:gmatch('[^,]+') do want[w] = true end

local fp32 = assert(m:eval(data))
local name = m.info.path:match('[^/]+$') or m.info.path
print(('%s (%s, %d parameters); data: %d windows of %d tokens (%d scored)'):format(name, m.info.architecture,
  m.info.params, fp32.windows, ctx, fp32.tokens))

local notes = {}
local function run(spec, opts)
  local v, err = m:variant(spec, opts)
  if not v then notes[#notes + 1] = err return nil end
  local e
  e, err = v:eval(data)
  local mem = v:memory()
  v:close()
  if not e then notes[#notes + 1] = err return nil end
  return e.ppl, mem
end
local function show(x, fmt) return x and (fmt or '%.2f'):format(x) or 'n/a' end
local function flush_notes()
  for _, n in ipairs(notes) do print('  n/a: ' .. n) end
  notes = {}
end

if want.rptq then
  print()
  print('RPTQ: perplexity by setting (W weight bits, A activation bits, KV: only the KV cache)')
  local st = assert(m:calibrate(calib))
  local settings = {'W4A16', 'W4A8', 'W4A4', 'W4A4KV', 'W4A3KV', 'W3A3KV'}
  local head, ppl, wmb, kv = {'', 'FP32'}, {name .. ' ppl', fp32.ppl}, {'weights MB', m:memory().weight_bytes / 1e6},
                             {'KV bytes/token', m:memory().kv_bytes_per_token}
  for _, s in ipairs(settings) do
    local p, mem = run('rptq:' .. s, {stats = st})
    head[#head + 1], ppl[#ppl + 1] = s, show(p)
    wmb[#wmb + 1], kv[#kv + 1] = mem and show(mem.weight_bytes / 1e6) or 'n/a', mem and mem.kv_bytes_per_token or 'n/a'
  end
  ppl[2] = show(fp32.ppl)
  wmb[2] = show(wmb[2])
  io.write(qs.table{head, ppl, wmb, kv})
  flush_notes()
  st:close()
end

if want.slice then
  print()
  print('SliceGPT: perplexity and parameters by slicing')
  local rows = {{'slicing', 'ppl', 'params', 'params %'}}
  rows[2] = {'dense', show(fp32.ppl), m:memory().params, show(100, '%.1f')}
  for _, r in ipairs({0.10, 0.20, 0.25, 0.30}) do
    local p, mem = run(('slice:ratio=%g'):format(r), {calib = calib})
    rows[#rows + 1] = {('%d%%'):format(math.floor(r * 100 + 0.5)), show(p), mem and mem.params or 'n/a',
                       mem and show(100 * mem.params / m.info.params, '%.1f') or 'n/a'}
  end
  io.write(qs.table(rows))
  print('(params count the residual shortcuts\' matrices, as the SliceGPT code does)')
  flush_notes()
end

if want.int8 then
  print()
  print('LLM.int8(): 8-bit matrix multiplication with and without the decomposition')
  local rows = {{'method', 'spec', 'ppl', 'weights MB'}, {'fp32', 'fp32', show(fp32.ppl), show(m:memory().weight_bytes / 1e6)}}
  for _, r in ipairs({{'int8 absmax (per tensor)', 'int8:threshold=0,act=tensor'},
                      {'int8 vector-wise', 'int8:threshold=0'},
                      {'int8 vector-wise + decomposition (tau 6)', 'int8:threshold=6'}}) do
    local p, mem = run(r[2])
    rows[#rows + 1] = {r[1], r[2], show(p), mem and show(mem.weight_bytes / 1e6) or 'n/a'}
  end
  io.write(qs.table(rows))
  flush_notes()
end
