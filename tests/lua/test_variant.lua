-- Variant: specs (strings and tables), errors, fp32/rtn against the model
-- and the CLI, lifetimes; then the three methods (LLM.int8(), RPTQ,
-- SliceGPT) against `qscope ppl --variant ... --json` and the references.
local T = ...
local qs = require 'qscope'
local m = assert(qs.load(T.model))

-- `qscope ppl --variant SPEC --max-windows 8 --json` (and its calibration options)
local function cli_ppl(spec, extra)
  return T.cli_json(('ppl %s --data %s --max-windows 8 --variant %s %s --json'):format(T.model, T.eval, T.shquote(spec), extra or ''))
end

T.test('spec errors keep the parser\'s message', function()
  T.raises("bad argument #1 to 'variant' (rpqt: unknown method 'rpqt' (fp32, rtn, int8, rptq, slice)\n  rpqt\n  ^)",
           function() return m:variant('rpqt') end)
  T.raises("bad argument #1 to 'variant' (rtn:w=99: 'w' = 99 is out of range [2, 16]\n  rtn:w=99\n        ^)",
           function() return m:variant('rtn:w=99') end)
  T.raises("unknown key 'x' for rptq", function() return m:variant('rptq:x=1') end)
  -- malformed specs: the spec again, a caret under the fault
  T.raises("rtn:w=4,,a=8: an empty option before ','\n  rtn:w=4,,a=8\n          ^", function() return m:variant('rtn:w=4,,a=8') end)
  T.raises("slice:ratio=0.25+: nothing after '+'\n  slice:ratio=0.25+\n                  ^",
           function() return m:variant('slice:ratio=0.25+') end)
  T.raises("int8:threshold=6,tau=3: 'threshold' is given twice\n  int8:threshold=6,tau=3\n                   ^",
           function() return m:variant('int8:threshold=6,tau=3') end)
  T.raises("bad argument #1 to 'variant' (spec string or table expected, got number)", function() return m:variant(42) end)
  T.raises("bad argument #1 to 'variant' (a table spec needs method = \"name\"", function() return m:variant({w = 4}) end)
  T.raises("table spec's values are numbers, strings or booleans", function() return m:variant({method = 'rtn', w = {}}) end)
  T.raises("bad argument #2 to 'variant' ('stats' expects a Stats, got number)", function() return m:variant('fp32', {stats = 1}) end)
  T.raises("'calib' expects a table", function() return m:variant('fp32', {calib = 'x'}) end)
  T.raises("bad argument #2 to 'variant' (unknown option 'calib.windowz' (options: file, text, ids_file, offsets, ctx, windows))",
           function() return m:variant('int8', {calib = {windowz = 3}}) end)
  T.raises("bad argument #2 to 'variant' (unknown option 'stat' (options: stats, calib, progress))",
           function() return m:variant('fp32', {stat = 1}) end)
  local other = assert(qs.load(T.model))
  local ost = assert(other:calibrate{windows = 1, ctx = 64})
  T.raises("'stats' were gathered on another model", function() return m:variant('fp32', {stats = ost}) end)
end)

T.test('qs.spec: canonical text, whether calibration is needed', function()
  local s, need = qs.spec('rptq:W4A4')
  T.eq(s, 'rptq:w=4,a=4,g=32')
  T.eq(need, true)
  T.eq(select(2, qs.spec('rtn:w=4')), false)
  T.eq(qs.spec{method = 'rtn', w = 4, group = 128}, 'rtn:w=4,group=128')
  T.eq(qs.spec{{method = 'slice', ratio = 0.25}, 'rtn:w=8'}, 'slice:ratio=0.25+rtn:w=8')
  T.eq(qs.spec{method = 'int8', threshold = 6.5}, 'int8:threshold=6.5')
  T.eq(qs.spec{method = 'rtn', w = 4, sym = true}, 'rtn:w=4,sym=1')
  T.fails("unknown method 'nope'", qs.spec, 'nope')
  T.fails('table spec needs method', qs.spec, {w = 4})
  T.raises("bad argument #1 to 'spec' (spec string or table expected, got no value)", function() return qs.spec() end)
end)

T.test('fp32 variant = the model', function()
  local v = assert(m:variant('fp32'))
  T.eq(v.spec, 'fp32')
  T.eq(v:ppl{windows = 2, ctx = 256}, m:ppl{windows = 2, ctx = 256})
  local a, b = v:logits('The kernel'), m:logits('The kernel')
  T.eq(a[2][100], b[2][100])
  T.eq(v:generate('The kernel', {n = 8}), m:generate('The kernel', {n = 8}))
  local vm, mm = v:memory(), m:memory()
  T.eq(vm.weight_bytes, mm.weight_bytes)
  T.eq(vm.params, mm.params)
  T.eq(vm.kv_bytes_per_token, mm.kv_bytes_per_token)
end)

T.test('rtn:w=4 equals qscope ppl --variant', function()
  local j = cli_ppl('rtn:w=4')
  local v = assert(m:variant('rtn:w=4'))
  T.eq(v.spec, j.variant)
  T.eq(v.description, j.description)
  T.eq(v:describe(), j.description)
  T.near(v:ppl{file = T.eval, windows = 8}, j.ppl, 1e-12, 'ppl')
  local e = v:eval{file = T.eval, windows = 8}
  T.near(e.nll, j.nll, 1e-12, 'nll')
  T.eq(e.tokens, math.tointeger(j.tokens))
  T.eq(e.windows, 8)
  local mem = v:memory()
  T.eq(mem.weight_bytes, math.tointeger(j.weight_bytes))
  T.eq(mem.kv_bytes_per_token, math.tointeger(j.kv_bytes_per_token))
  T.eq(mem.params, math.tointeger(j.params))
  -- against fp32 (4 bytes a parameter): the model itself may be held as f16
  T.check(mem.weight_bytes < m.info.params * 4 / 2, '4-bit weights are under half of fp32')
  -- a table spec is the same variant
  local t = assert(m:variant{method = 'rtn', w = 4})
  T.eq(t.spec, v.spec)
  T.eq(t:ppl{windows = 2, ctx = 128}, v:ppl{windows = 2, ctx = 128})
end)

T.test('fields, tostring, calibrate on a variant', function()
  local st = assert(m:calibrate{windows = 2, ctx = 128})
  local v = assert(m:variant('rtn:w=4', {stats = st}))
  T.eq(v.model, m)
  T.eq(v.stats, st)
  T.eq(assert(m:variant('rtn:w=4')).stats, nil)
  T.check(tostring(v):find('rtn:w=4', 1, true), tostring(v))
  local vs = assert(v:calibrate{windows = 2, ctx = 128})
  -- the first norm's output does not depend on the quantized weights; later sites do
  T.eq(vs:site(0, 'attn_in').max[5], st:site(0, 'attn_in').max[5], 'layer 0 input unchanged')
  T.check(vs:site(3, 'mlp_in').max[5] ~= st:site(3, 'mlp_in').max[5], 'layer 3 input changed')
  T.eq(vs.model, m)
end)

T.test('lifetimes: a Variant keeps its Model; closed Variants fail', function()
  local v = (function()
    local mm = assert(qs.load(T.model))
    return assert(mm:variant('rtn:w=8'))
  end)()
  collectgarbage()
  collectgarbage()
  T.eq(type(v:ppl{windows = 1, ctx = 64}), 'number')
  local mm = assert(qs.load(T.model))
  local v2 = assert(mm:variant('rtn:w=8'))
  mm:close()
  collectgarbage()
  T.eq(v2:ppl{windows = 1, ctx = 64}, v:ppl{windows = 1, ctx = 64}, 'still runs after m:close()')
  T.raises('attempt to use a closed Model', function() return v2.model:ppl() end)
  v2:close()
  v2:close()
  T.raises('attempt to use a closed Variant', function() return v2:ppl() end)
  T.raises('attempt to use a closed Variant', function() return v2.spec end)
  T.raises('attempt to use a closed Variant', function() return v2:memory() end)
  T.eq(tostring(v2), 'Variant (closed)')
  do
    local v3 <close> = assert(m:variant('fp32'))
    v2 = v3
  end
  T.raises('attempt to use a closed Variant', function() return v2:generate('x') end)
end)

T.test('not applicable: clusters, eigenvalues, int8 columns', function()
  local v = assert(m:variant('rtn:w=4'))
  T.fails('no clusters at layer 0 attn_in', v.clusters, v, 0, 'attn_in')
  T.fails('no eigenvalues for layer 0 attn', v.eigenvalues, v, 0)
  T.fails('runs no LLM.int8() kernel', v.int8_columns, v, {ctx = 64})
  T.raises("bad argument #1 to 'clusters' (layer 6 out of range [0, 5])", function() return v:clusters(6, 'mlp_in') end)
  T.raises("bad argument #2 to 'eigenvalues' (invalid option 'foo')", function() return v:eigenvalues(0, 'foo') end)
  T.raises("bad argument #1 to 'eigenvalues' (layer -1 out of range [0, 5])", function() return v:eigenvalues(-1) end)
end)

T.test('qs.compare', function()
  local rows = assert(qs.compare(m, {'fp32', 'rtn:w=4', {method = 'rtn', w = 8}}, {file = T.eval, windows = 2, ctx = 256}))
  T.eq(#rows, 3)
  T.eq(rows[1].variant, 'fp32')
  T.eq(rows[1].delta_ppl, 0.0)
  T.eq(rows.reference, rows[1].ppl)
  T.eq(rows[2].ppl, assert(m:variant('rtn:w=4')):ppl{file = T.eval, windows = 2, ctx = 256})
  T.eq(rows[3].variant, 'rtn:w=8')
  T.near(rows[2].delta_ppl, rows[2].ppl - rows[1].ppl, 1e-15)
  T.eq(rows[2].weight_bytes, assert(m:variant('rtn:w=4')):memory().weight_bytes)
  T.check(rows[2].tokens_per_second > 0 and rows[2].params > 0 and rows[2].kv_bytes_per_token > 0, 'row fields')
  -- one vocabulary: a row has the fields of qscope compare --json's, by the same names and values
  local j = T.cli_json('compare ' .. T.model .. ' --data ' .. T.eval .. ' --ctx 256 --max-windows 2 --variants rtn:w=4 --json')
  local jr, lk, jk = j.variants[2], {}, {}
  for k in pairs(rows[2]) do lk[#lk + 1] = k end
  for k in pairs(jr) do jk[#jk + 1] = k end
  table.sort(lk)
  table.sort(jk)
  T.eq(table.concat(lk, ' '), table.concat(jk, ' '), 'field names')
  for _, k in ipairs({'variant', 'description', 'ppl', 'delta_ppl', 'nll', 'tokens', 'windows', 'ctx', 'weight_bytes',
                      'kv_bytes_per_token', 'params'}) do
    T.eq(rows[2][k], type(rows[2][k]) == 'number' and math.type(rows[2][k]) == 'integer' and math.tointeger(jr[k]) or jr[k], k)
  end
  -- and the protocol it was measured by
  T.eq(j.model, T.model)
  T.eq(j.data, T.eval)
  T.eq(j.ctx, 256)
  T.eq(j.windows, 2)
  T.eq(j.max_windows, 2)
  T.eq(j.stride, 0)
  T.check(j.qscope_version == T.sh(T.qscope .. ' --version'):match('^qscope (%S+)'), 'qscope_version')
  local r2 = assert(qs.compare(m, {'rtn:w=8'}, {windows = 1, ctx = 128}))
  T.check(r2.reference > 0 and r2[1].delta_ppl, 'fp32 reference computed when not listed')
  T.fails('no-such.txt', qs.compare, m, {'fp32'}, {file = 'no-such.txt'})
  T.raises("bad argument #2 to 'compare' (spec 2: rpqt: unknown method 'rpqt'", function() return qs.compare(m, {'fp32', 'rpqt'}) end)
  T.raises("bad argument #2 to 'compare' (array of specs expected, got string)", function() return qs.compare(m, 'fp32') end)
  -- a misspelt option fails before any calibration or scoring
  T.raises("bad argument #3 to 'compare' (unknown option 'windowz' (options: file, text, ids, ctx, windows, stride, progress, stats, calib))",
           function() return qs.compare(m, {'rptq:W4A4'}, {windowz = 1}) end)
  T.raises("bad argument #3 to 'compare' (unknown option 'calib.window'", function() return qs.compare(m, {'int8'}, {calib = {window = 1}}) end)
  T.raises("bad argument #3 to 'compare' ('windows' = 0 is out of range [1,", function() return qs.compare(m, {'fp32'}, {windows = 0}) end)
  local seen = {}
  qs.compare(m, {'rtn:w=8'}, {windows = 2, ctx = 64, progress = function(spec, done, total) seen[#seen + 1] = spec .. ':' .. done end})
  T.eq(table.concat(seen, ' '), 'fp32:1 fp32:2 rtn:w=8:1 rtn:w=8:2')
end)

-- ---- the methods (the slow tests, last) ----

local cal_st = nil
local function stats8()
  cal_st = cal_st or assert(m:calibrate{windows = 8, ctx = 512})
  return cal_st
end

T.test('int8: LLM.int8() equals the CLI; outlier columns', function()
  local j = cli_ppl('int8')
  local v, err = m:variant('int8')
  T.check(v, 'int8: %s', tostring(err))
  T.eq(v.spec, j.variant)
  T.near(v:ppl{file = T.eval, windows = 8}, j.ppl, 1e-12, 'ppl')
  T.eq(v:memory().weight_bytes, math.tointeger(j.weight_bytes))
  local cols, n = assert(v:int8_columns{file = T.eval, ctx = 512})
  T.eq(n, 512)
  T.eq(#cols, m.info.n_layers)
  for l = 1, #cols do
    for _, k in ipairs({'attn_in', 'attn_out', 'mlp_in', 'mlp_mid'}) do T.eq(math.type(cols[l][k]), 'integer', k) end
  end
  local none = assert(m:variant('int8:threshold=0'))
  local c0 = assert(none:int8_columns{ctx = 128})
  T.eq(c0[3].mlp_in, 0, 'no decomposition at threshold 0')
end)

T.test('rptq: W4A4 with shared stats equals the CLI; clusters', function()
  local j = cli_ppl('rptq:W4A4', '--calib-windows 8')
  local st = stats8()
  local v, err = m:variant('rptq:W4A4', {stats = st})
  T.check(v, 'rptq: %s', tostring(err))
  T.eq(v.spec, j.variant)
  T.near(v:ppl{file = T.eval, windows = 8}, j.ppl, 1e-9, 'ppl with shared stats')
  local mem = v:memory()
  T.eq(mem.weight_bytes, math.tointeger(j.weight_bytes))
  T.eq(mem.kv_bytes_per_token, math.tointeger(j.kv_bytes_per_token))
  -- without stats: calibrates on its own, from the calib options
  local w = assert(m:variant('rptq:W4A4', {calib = {windows = 8}}))
  T.near(w:ppl{file = T.eval, windows = 8}, j.ppl, 1e-9, 'ppl with its own calibration')
  -- the variant's clusters of the first site are st:clusters of the same stats
  local g8 = assert(m:variant('rptq:w=4,a=4,g=8', {stats = st}))
  local lab, k = g8:clusters(0, 'attn_in')
  T.eq(k, 8)
  T.eq(table.concat(lab, ','), table.concat(st:clusters(0, 'attn_in', 8), ','), 'same k-means')
  local mid, km = assert(g8:clusters(2, 'mlp_mid'))
  T.eq(#mid, m.info.d_ff)
  T.eq(km, 8)
  -- seed=: every k-means takes it, so the clusters are st:clusters with that seed, the
  -- same on every build; another seed moves clusters and perplexity
  local s7 = assert(m:variant('rptq:w=4,a=4,g=8,seed=7', {stats = st}))
  local s7b = assert(m:variant({method = 'rptq', w = 4, a = 4, g = 8, seed = 7}, {stats = st}))
  T.eq(s7.spec, 'rptq:w=4,a=4,g=8,seed=7')
  T.eq(assert(m:variant('rptq:w=4,a=4,g=8,seed=0', {stats = st})).spec, 'rptq:w=4,a=4,g=8')
  local moved = 0
  for l = 0, m.info.n_layers - 1 do
    for _, site in ipairs{'attn_in', 'mlp_in', 'mlp_mid'} do
      local c7 = table.concat(s7:clusters(l, site), ',')
      T.eq(c7, table.concat(st:clusters(l, site, 8, 7), ','), ('seed 7, layer %d %s'):format(l, site))
      T.eq(c7, table.concat(s7b:clusters(l, site), ','), 'the same seed, the same clusters')
      if c7 ~= table.concat(g8:clusters(l, site), ',') then moved = moved + 1 end
    end
  end
  T.check(moved > 0, 'seed 7 moves some clusters')
  T.check(s7:ppl{file = T.eval, windows = 2} ~= g8:ppl{file = T.eval, windows = 2}, 'and the perplexity')
  T.raises("out of range", function() return m:variant('rptq:w=4,seed=-1', {stats = st}) end)
end)

T.test('rptq: progress and interrupt while calibrating', function()
  local n = 0
  assert(m:variant('rptq:W4A8', {calib = {windows = 2, ctx = 128}, progress = function() n = n + 1 end}))
  T.check(n > 0, 'progress called')
  T.raises('interrupted', function()
    return m:variant('rptq:W4A8', {calib = {windows = 2, ctx = 128}, progress = function() qs.interrupt() end})
  end)
end)

local slice25
T.test('slice: SliceGPT equals the CLI; eigenvalues', function()
  local j = cli_ppl('slice:ratio=0.25', '--calib-windows 8')
  local v, err = m:variant('slice:ratio=0.25', {stats = stats8()})
  T.check(v, 'slice: %s', tostring(err))
  slice25 = v
  T.near(v:ppl{file = T.eval, windows = 8}, j.ppl, 1e-9, 'ppl')
  local mem = v:memory()
  T.eq(mem.params, math.tointeger(j.params))
  T.eq(mem.weight_bytes, math.tointeger(j.weight_bytes))
  local eig, kept = assert(v:eigenvalues(1, 'attn'))
  T.eq(kept, 144, 'floor(0.75 * 192 / 8) * 8')
  T.eq(#eig, m.info.d_model)
  for i = 2, #eig do T.check(eig[i] <= eig[i - 1], 'descending at %d', i) end
  local e2, k2 = assert(v:eigenvalues(1, 'mlp'))
  T.eq(k2, kept)
  T.check(e2[1] > 0, 'positive spectrum')
end)

T.test('slice: widths and parameters of the official SliceGPT code', function()
  local ref = T.json(T.read(T.shared('models/opt-mini/reference/slicegpt.json')))
  T.check(slice25, 'the slice variant was built')
  T.eq(slice25:memory().params, math.tointeger(ref.params_incl_shortcuts['0.25']), 'parameters incl. shortcuts')
  for l = 0, m.info.n_layers - 1 do
    T.eq(select(2, slice25:eigenvalues(l, 'attn')), math.tointeger(ref.widths['0.25']), 'width of layer ' .. l)
  end
end)

T.test('v:export writes a GGUF file that loads back with the variant\'s logits', function()
  local dir = T.shared('models/llama-mini/config.json'):gsub('/config.json$', '')
  local lm = assert(qs.load(dir))
  local v = assert(lm:variant('rtn:w=4,group=32,sym=1,grid=ggml'))
  local out = T.tmp('.gguf')
  os.remove(out)
  T.eq(assert(v:export(out)), out)
  local back = assert(qs.load(out))
  local ids = {1, 450, 4996, 17354, 1701}
  local a, b = v:logits(ids), back:logits(ids)
  T.eq(#b, #a)
  local worst = 0
  for t = 1, #a do
    local ra, rb = a[t], b[t]
    for j = 1, #ra, 7 do worst = math.max(worst, math.abs(ra[j] - rb[j])) end
  end
  T.eq(worst, 0, 'largest logit difference')
  -- an existing file is replaced only with force
  T.fails('exists; give --force', function() return v:export(out) end)
  T.eq(assert(v:export(out, {force = true})), out)
  -- what GGUF cannot hold is named; weights_only writes the rest
  local a8 = assert(lm:variant('rtn:w=4,group=32,sym=1,a=8'))
  T.fails('A8 activation quantizers at', function() return a8:export(out, {force = true}) end)
  T.eq(assert(a8:export(out, {force = true, weights_only = true})), out)
  T.raises("unknown option 'forse'", function() return v:export(out, {forse = true}) end)
  os.remove(out)
end)
