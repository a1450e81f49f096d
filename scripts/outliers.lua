-- outliers.lua: the LLM.int8() outlier analysis, layer by layer.
--
-- Dettmers et al. (2022), section 4.1: a feature dimension of the hidden
-- states that feed the linear layers is an outlier when |x| >= tau (6) in
-- at least 25% of those inputs (attn_in and mlp_in of every layer) at at
-- least 6% of the sequence positions. This script calibrates the model and
-- prints, for every layer and every linear input, the largest |x|, the
-- channel it is in, how many channels reach tau and at what share of the
-- positions some channel does; then the outlier dimensions by the paper's
-- criteria, a heatmap of each channel's largest |x| (layer x channel), and
-- the per-channel (min, max) of the site with the largest outlier.
--
-- usage: qscope run scripts/outliers.lua [--model DIR] [--calib FILE]
--            [--calib-windows N] [--ctx N] [--tau T] [--layer-frac F]
--            [--pos-frac F] [--plots=false]
-- defaults: the bundled model, calib.txt beside it, 16 windows of 512
-- tokens, tau 6, layer-frac 0.25, pos-frac 0.06.
local qs = require 'qscope'
local o = qs.args(arg, {model = '', calib = '', calib_windows = 16, ctx = 512, tau = 6.0,
                        layer_frac = 0.25, pos_frac = 0.06, plots = true})

local m = assert(qs.load(o.model ~= '' and o.model or nil))
local info = m.info
local st = assert(m:calibrate{file = o.calib ~= '' and o.calib or nil, windows = o.calib_windows,
                              ctx = math.min(o.ctx, info.max_pos), tau = o.tau})
print(('%s: %d layers, d_model %d; %s, %d tokens; tau = %g'):format(info.path, info.n_layers, info.d_model,
  st.source, st.tokens, o.tau))
print()

local sites = {'attn_in', 'attn_out', 'mlp_in', 'mlp_mid'}
local rows = {{'layer', 'site', 'max |x|', 'channel', 'channels >= tau', 'positions >= tau %', 'median absmax'}}
local worst = {absmax = -1}
for l = 0, info.n_layers - 1 do
  for _, name in ipairs(sites) do
    local s = assert(st:site(l, name))
    local amax, ch = s.absmax:max(), s.absmax:argmax() - 1
    local over = 0
    for c = 1, s.dim do if s.absmax[c] >= o.tau then over = over + 1 end end
    local pos = 0
    for t = 1, #s.tok_absmax do if s.tok_absmax[t] >= o.tau then pos = pos + 1 end end
    local sorted = s.absmax:totable()
    table.sort(sorted)
    rows[#rows + 1] = {l, name, amax, ch, over, 100 * pos / #s.tok_absmax, sorted[(#sorted + 1) // 2]}
    if amax > worst.absmax then worst = {absmax = amax, layer = l, site = name, channel = ch} end
  end
end
io.write(qs.table(rows))

print()
local out = st:outliers{threshold = o.tau, layer_frac = o.layer_frac, pos_frac = o.pos_frac}
print(('Outlier dimensions: |x| >= %g in >= %g%% of the %d linear inputs (attn_in, mlp_in) at >= %g%% of positions'):format(
  o.tau, 100 * o.layer_frac, 2 * info.n_layers, 100 * o.pos_frac))
if #out == 0 then
  print('  none')
else
  local t = {{'dim', 'inputs', 'of inputs %', 'positions %', 'max |x|', 'layers'}}
  for _, d in ipairs(out) do
    t[#t + 1] = {d.dim, d.inputs, 100 * d.layer_frac, 100 * d.pos_frac, d.absmax, table.concat(d.layers, ' ')}
  end
  io.write(qs.table(t))
end

if o.plots then
  print()
  local mat, labels = {}, {}
  for l = 0, info.n_layers - 1 do
    mat[#mat + 1] = st:site(l, 'attn_in').absmax
    labels[#labels + 1] = l .. ' attn'
    mat[#mat + 1] = st:site(l, 'mlp_in').absmax
    labels[#labels + 1] = l .. ' mlp'
  end
  qs.plot.heatmap(mat, {title = 'largest |x| per channel: the norm outputs of each layer', row_labels = labels,
                        x0 = 0, xlabel = 'channel', ylabel = 'layer and input'})
  print()
  local s = st:site(worst.layer, worst.site)
  local big = {}
  for c = 1, s.dim do big[c] = s.absmax[c] >= o.tau and 2 or 1 end
  qs.plot.scatter(s.min, s.max, {title = ('layer %d %s: each channel\'s (min, max); channel %d reaches %.2f'):format(
    worst.layer, worst.site, worst.channel, worst.absmax), color = big, names = {'|x| < tau', '|x| >= tau'},
    xlabel = 'min', ylabel = 'max'})
end
