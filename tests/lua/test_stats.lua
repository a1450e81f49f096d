-- Stats: calibration, per-site statistics, k-means clusters, the LLM.int8()
-- outlier analysis; numbers against the CLI and the transformers reference.
local T = ...
local qs = require 'qscope'
local m = assert(qs.load(T.model))
local st = assert(m:calibrate{file = T.calib, windows = 4, ctx = 256})

T.test('calibrate: fields', function()
  T.eq(st.tokens, 4 * 256)
  T.eq(st.windows, 4)
  T.eq(st.ctx, 256)
  T.eq(st.tau, 6.0)
  T.eq(st.n_layers, m.info.n_layers)
  T.eq(st.source, '4 windows of 256 tokens of ' .. T.calib)
  T.eq(st.model, m)
  T.check(tostring(st):find('1024 tokens', 1, true), tostring(st))
end)

T.test('site equals qscope stats --csv', function()
  local out = T.sh(T.qscope .. ' stats ' .. T.model .. ' --site mlp_in --layer 3 --csv --calib-windows 4 --calib-ctx 256 2>/dev/null')
  local s = st:site(3, 'mlp_in')
  T.eq(s.layer, 3)
  T.eq(s.site, 'mlp_in')
  T.eq(s.dim, m.info.d_model)
  T.eq(s.tokens, 1024)
  local n = 0
  for line in out:gmatch('[^\n]+') do
    local l, site, c, mn, mx, am, mean, sd, frac = line:match('^(%d+),([%w_]+),(%d+),([^,]+),([^,]+),([^,]+),([^,]+),([^,]+),([^,]+)$')
    if l then
      local i = tonumber(c) + 1
      T.near(s.min[i], tonumber(mn), 1e-6, 'min ' .. c)
      T.near(s.max[i], tonumber(mx), 1e-6, 'max ' .. c)
      T.near(s.absmax[i], tonumber(am), 1e-6, 'absmax ' .. c)
      T.near(s.mean[i], tonumber(mean), 1e-6, 'mean ' .. c)
      T.near(s.std[i], tonumber(sd), 1e-6, 'std ' .. c)
      T.near(s.frac_over_tau[i], tonumber(frac), 1e-6, 'frac ' .. c)
      n = n + 1
    end
  end
  T.eq(n, s.dim, 'channels compared')
end)

T.test('linear inputs equal the transformers reference min/max', function()
  local ref = T.json(T.read(T.shared('models/opt-mini/reference/reference.json')))
  local mm = T.f32(T.shared('models/opt-mini/reference/' .. ref.linear_input_minmax.file))
  -- the first two 512-token windows of WikiText-2, as int32 ids
  local all = T.read(T.shared('models/opt-mini/reference/wiki_test_ids.i32'))
  local f = T.write(T.tmp('.i32'), all:sub(1, 2 * 512 * 4))
  local ws = assert(m:calibrate{ids_file = f, ctx = 512})
  os.remove(f)
  T.eq(ws.tokens, 1024)
  local d, ff, L = m.info.d_model, m.info.d_ff, m.info.n_layers
  local site_of = {q_proj = 'attn_in', k_proj = 'attn_in', v_proj = 'attn_in', out_proj = 'attn_out', fc1 = 'mlp_in', fc2 = 'mlp_mid'}
  local off, worst, checked = 0, 0, 0
  for _, name in ipairs(ref.linear_input_minmax.names) do
    local layer, site, width
    if name == 'lm_head' then
      layer, site, width = L, 'head_in', d
    else
      local l, proj = name:match('layers%.(%d+)%.[%w_]+%.?([%w_]*)$')
      proj = name:match('([%w_]+)$')
      layer, site = tonumber(name:match('layers%.(%d+)%.')), site_of[proj]
      width = proj == 'fc2' and ff or d
    end
    local s = assert(ws:site(layer, site))
    for c = 1, width do
      worst = math.max(worst, math.abs(s.min[c] - mm[off + c]), math.abs(s.max[c] - mm[off + width + c]))
    end
    off = off + 2 * width
    checked = checked + 1
  end
  T.eq(off, #mm, 'the whole reference file was compared')
  T.eq(checked, #ref.linear_input_minmax.names)
  T.check(worst < 2e-3, 'max |diff| = %g', worst)
end)

T.test('site: head_in, per-token absmax, unrecorded sites', function()
  local h = assert(st:site(m.info.n_layers, 'head_in'))
  T.eq(h.dim, m.info.d_model)
  local s = st:site(2, 'attn_in')
  T.eq(#s.tok_absmax, st.tokens)
  T.eq(s.tok_absmax:max(), s.absmax:max(), 'the largest token absmax is the largest channel absmax')
  local only = assert(m:calibrate{windows = 1, ctx = 64, sites = {'mlp_in'}, per_token = false})
  T.check(only:site(0, 'mlp_in'), 'recorded site')
  T.eq(only:site(0, 'mlp_in').tok_absmax, nil, 'per_token = false')
  T.fails('no statistics for layer 0 attn_in', only.site, only, 0, 'attn_in')
end)

T.test('site misuse names the argument', function()
  T.raises("bad argument #1 to 'site' (layer 99 out of range [0, 5])", function() return st:site(99, 'mlp_in') end)
  T.raises("bad argument #2 to 'site' (unknown site 'mlp_inn'", function() return st:site(0, 'mlp_inn') end)
  T.raises("bad argument #1 to 'site' (head_in is at layer 6", function() return st:site(2, 'head_in') end)
  T.raises("bad argument #1 to 'site' (number expected, got nil)", function() return st:site() end)
end)

T.test('covariance: X^T X with the sums of squares on its diagonal', function()
  local cs = assert(m:calibrate{windows = 2, ctx = 128, cov = {'resid'}, sites = {'resid'}})
  local s = cs:site(1, 'resid')
  local c = s.cov
  T.eq(#c, s.dim)
  T.eq(#c[1], s.dim)
  for _, i in ipairs({1, 7, 34, s.dim}) do
    local sumsq = s.tokens * (s.std[i] ^ 2 + s.mean[i] ^ 2)
    T.near(c[i][i], sumsq, 1e-6, 'diagonal ' .. i)
    T.eq(c[i][3], c[3][i], 'symmetric')
  end
  T.eq(st:site(1, 'resid').cov, nil, 'no covariance unless asked')
end)

T.test('calibrate options and expected failures', function()
  local a = assert(m:calibrate{windows = 2, ctx = 128})
  local b = assert(m:calibrate{offsets = {0, 128}, ctx = 128})
  T.eq(b.tokens, 256)
  T.eq(a:site(4, 'mlp_mid').max[17], b:site(4, 'mlp_mid').max[17], 'offsets 0, 128 = the first two windows')
  local text = assert(m:calibrate{text = T.read(T.calib):sub(1, 4000), windows = 2, ctx = 128})
  T.eq(text:site(0, 'attn_in').min[1], a:site(0, 'attn_in').min[1], 'text = the start of the file')
  T.fails('no-such.txt', m.calibrate, m, {file = 'no-such.txt'})
  T.fails('fewer than one window', m.calibrate, m, {text = 'short', ctx = 128})
  T.fails('no-such.i32', m.calibrate, m, {ids_file = 'no-such.i32'})
  T.raises("bad argument #1 to 'calibrate' ('windows' = 0 is out of range", function() return m:calibrate{windows = 0} end)
  T.raises("'ctx' = 9999 is out of range [2, 512]", function() return m:calibrate{ctx = 9999} end)
  T.raises("'cov': element 1 is not a site name (nope)", function() return m:calibrate{cov = {'nope'}} end)
  T.raises("'sites' expects an array of site names", function() return m:calibrate{sites = 'mlp_in'} end)
  T.raises("give one of 'file', 'text' and 'ids_file'", function() return m:calibrate{file = T.calib, text = 'x'} end)
end)

T.test('calibrate progress, cancel, interrupt', function()
  local n = 0
  assert(m:calibrate{windows = 3, ctx = 64, progress = function(done, total) n = n + 1 T.eq(total, 3) end})
  T.eq(n, 3)
  T.fails('cancelled after 1 of 3', m.calibrate, m, {windows = 3, ctx = 64, progress = function() return false end})
  T.raises('interrupted', function() return m:calibrate{windows = 3, ctx = 64, progress = function() qs.interrupt() end} end)
end)

-- Sum of squared distances of the (max, min) points to their cluster means.
local function inertia_of(s, labels)
  local sx, sy, cnt = {}, {}, {}
  for i = 1, s.dim do
    local g = labels[i]
    sx[g], sy[g], cnt[g] = (sx[g] or 0) + s.max[i], (sy[g] or 0) + s.min[i], (cnt[g] or 0) + 1
  end
  local total = 0
  for i = 1, s.dim do
    local g = labels[i]
    total = total + (s.max[i] - sx[g] / cnt[g]) ^ 2 + (s.min[i] - sy[g] / cnt[g]) ^ 2
  end
  return total, cnt
end

T.test('clusters: k-means of (max, min) per channel', function()
  local s = st:site(3, 'mlp_in')
  local labels, inertia = st:clusters(3, 'mlp_in', 8)
  T.eq(#labels, s.dim)
  local total, cnt = inertia_of(s, labels)
  for g = 1, 8 do T.check((cnt[g] or 0) > 0, 'cluster %d is empty', g) end
  for i = 1, s.dim do T.check(labels[i] >= 1 and labels[i] <= 8, 'label range') end
  T.eq(labels[1], 1, 'clusters are numbered in the order of their first channel')
  T.near(inertia, total, 1e-9, 'reported inertia = the labels\' inertia')
  local again = st:clusters(3, 'mlp_in', 8)
  T.eq(table.concat(again, ','), table.concat(labels, ','), 'deterministic')
  -- Lloyd's fixed point: every channel is nearest its own centroid
  local cx, cy = {}, {}
  for i = 1, s.dim do
    local g = labels[i]
    cx[g], cy[g] = (cx[g] or 0) + s.max[i] / cnt[g], (cy[g] or 0) + s.min[i] / cnt[g]
  end
  for i = 1, s.dim do
    local own = (s.max[i] - cx[labels[i]]) ^ 2 + (s.min[i] - cy[labels[i]]) ^ 2
    for g = 1, 8 do T.check(own <= (s.max[i] - cx[g]) ^ 2 + (s.min[i] - cy[g]) ^ 2 + 1e-9, 'channel %d is nearer cluster %d', i, g) end
  end
  local one, i1 = st:clusters(3, 'mlp_in', 1)
  T.near(i1, (inertia_of(s, one)), 1e-9, 'k = 1: the total scatter')
  local all, i0 = st:clusters(3, 'mlp_in', 4096)
  T.eq(i0, 0.0, 'k >= dim: every channel alone')
  T.raises("bad argument #3 to 'clusters' (k must be in [1, 4096])", function() return st:clusters(3, 'mlp_in', 0) end)
end)

T.test('outliers equal qscope outliers', function()
  local out = T.sh(T.qscope .. ' outliers ' .. T.model .. ' --calib-windows 4 --calib-ctx 256 2>/dev/null')
  local cli = {}
  for line in out:gmatch('[^\n]+') do
    local dim, inputs, pct, amax, layers = line:match('^%s*(%d+)%s+(%d+)/%d+%s+([%d.]+)%%%s+([%d.]+)%s+(.*)$')
    if dim then cli[#cli + 1] = {dim = tonumber(dim), inputs = tonumber(inputs), pct = tonumber(pct), absmax = tonumber(amax), layers = layers} end
  end
  local o = st:outliers{threshold = 6}
  T.eq(#o, #cli, 'outlier count')
  T.check(#o > 0, 'opt-mini has an outlier dimension')
  for i, c in ipairs(cli) do
    T.eq(o[i].dim, c.dim)
    T.eq(o[i].index, c.dim + 1)
    T.eq(o[i].inputs, c.inputs)
    T.eq(table.concat(o[i].layers, ' '), c.layers)
    T.near(o[i].pos_frac * 100, c.pct, 0.051, 'positions')
    T.near(o[i].absmax, c.absmax, 0.006, 'absmax')
    T.near(o[i].layer_frac, c.inputs / (2 * m.info.n_layers), 1e-12)
  end
  local loose = st:outliers{layer_frac = 0, pos_frac = 0}
  T.check(#loose >= #o, 'looser criteria find more')
  T.raises('recalibrate with that threshold', function() return st:outliers{threshold = 4} end)
  T.raises("bad argument #1 to 'outliers' (unknown option 'layer_fraction' (options: tau, threshold, layer_frac, pos_frac))",
           function() return st:outliers{layer_fraction = 0} end)
  T.raises("'layer_frac' = 2 is out of range [0, 1]", function() return st:outliers{layer_frac = 2} end)
end)

T.test('a Stats outlives its Model variable', function()
  local s2 = (function()
    local mm = assert(qs.load(T.model))
    return assert(mm:calibrate{windows = 1, ctx = 64})
  end)()
  collectgarbage()
  collectgarbage()
  T.eq(s2:site(0, 'attn_in').dim, 192)
  T.eq(#s2.model:tokenize('still alive'), #m:tokenize('still alive'))
  local v = assert(s2.model:variant('fp32', {stats = s2}))
  T.eq(type(v:ppl{ctx = 64, windows = 1}), 'number')
end)

T.test('closing: Stats keep working after their Model is closed; closed Stats fail', function()
  local mm = assert(qs.load(T.model))
  local s2 = assert(mm:calibrate{windows = 1, ctx = 64})
  mm:close()
  collectgarbage()
  T.eq(s2:site(1, 'mlp_in').dim, 192, 'the weights stay while the Stats hold them')
  T.raises('attempt to use a closed Model', function() return s2.model:tokenize('x') end)
  s2:close()
  T.raises('attempt to use a closed Stats', function() return s2:site(1, 'mlp_in') end)
  T.raises('attempt to use a closed Stats', function() return s2.tokens end)
  T.eq(tostring(s2), 'Stats (closed)')
  do
    local s3 <close> = assert(m:calibrate{windows = 1, ctx = 64})
    s2 = s3
  end
  T.raises('attempt to use a closed Stats', function() return s2:outliers() end)
end)
