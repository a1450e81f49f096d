-- slice_sweep.lua: SliceGPT perplexity, size and speed against the slice ratio.
--
-- SliceGPT (Ashkboos et al. 2024) rotates each layer's residual stream
-- into its principal components (PCA of the calibration activations) and
-- deletes the least significant ones: a slice ratio s keeps
-- floor((1 - s) D / 8) * 8 of the D dimensions. The model really gets
-- smaller and faster. For each ratio this prints the width kept, the
-- perplexity and its change from the dense model, the parameters (the
-- residual shortcuts' matrices included) and their share of the dense
-- count, the weight bytes, and the evaluation speed; then plots perplexity
-- against the ratio and the PCA spectrum of one layer with the cut.
--
-- usage: qscope run scripts/slice_sweep.lua [--model DIR] [--data FILE]
--            [--windows N] [--ctx N] [--calib FILE] [--calib-windows N]
--            [--ratios 0,0.1,...] [--layer L] [--plots=false]
-- defaults: the bundled model, eval.txt and calib.txt beside it, 8 windows
-- of 512 tokens, 16 calibration windows, ratios 0,0.1,0.2,0.25,0.3,0.4,0.5,
-- spectrum of layer 2.
local qs = require 'qscope'
local o = qs.args(arg, {model = '', data = '', windows = 8, ctx = 512, calib = '', calib_windows = 16,
                        ratios = '0,0.1,0.2,0.25,0.3,0.4,0.5', layer = 2, plots = true})

local m = assert(qs.load(o.model ~= '' and o.model or nil))
local ctx = math.min(o.ctx, m.info.max_pos)
local data = {file = o.data ~= '' and o.data or nil, windows = o.windows, ctx = ctx}
local calib = {file = o.calib ~= '' and o.calib or nil, windows = o.calib_windows, ctx = ctx}
local dense = assert(m:eval(data))
local dmem = m:memory()
print(('%s: dense ppl %.4f, %d parameters, %.0f tokens/s (%d windows of %d)'):format(m.info.path, dense.ppl,
  dmem.params, dense.tokens_per_second, o.windows, ctx))
print()

local layer = math.min(math.max(0, math.tointeger(o.layer) or 0), m.info.n_layers - 1)
local rows = {{'ratio', 'width', 'ppl', 'delta', 'params', 'params %', 'weight MB', 'tokens/s'}}
local xs, ys, spectrum, cut, errors = {}, {}, nil, nil, {}
for r in o.ratios:gmatch('[^,]+') do
  local ratio = assert(tonumber(r), 'bad --ratios')
  local v, err = m:variant({method = 'slice', ratio = ratio}, {calib = calib})
  if v then
    local e
    e, err = v:eval(data)
    local eig, kept = v:eigenvalues(layer, 'attn')
    if e then
      local mem = v:memory()
      rows[#rows + 1] = {ratio, kept or 'n/a', e.ppl, e.ppl - dense.ppl, mem.params, 100 * mem.params / dmem.params,
                         mem.weight_bytes / 1e6, e.tokens_per_second}
      xs[#xs + 1], ys[#ys + 1] = ratio, e.ppl
    end
    if eig and (ratio == 0.25 or not spectrum) then spectrum, cut = eig, kept end
    v:close()
  end
  if err then
    errors[#errors + 1] = err
    rows[#rows + 1] = {ratio, 'n/a', 'n/a'}
  end
  io.stdout:flush()
end
io.write(qs.table(rows))
for _, e in ipairs(errors) do print('  ' .. e) end

if o.plots then
  if #xs >= 2 then
    print()
    qs.plot.line(xs, ys, {title = 'perplexity against the slice ratio (dense: horizontal line)', hline = dense.ppl,
                          xlabel = 'slice ratio', ylabel = 'ppl', height = 14})
  end
  if spectrum then
    print()
    qs.plot.line(spectrum, {title = ('layer %d: PCA eigenvalues of the attention input; the cut keeps %d'):format(layer, cut),
                            logy = true, vline = cut, x0 = 1, xlabel = 'component', ylabel = 'eigenvalue', height = 14})
  end
end
