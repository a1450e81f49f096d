-- int8_threshold.lua: the LLM.int8() threshold sweep.
--
-- LLM.int8() (Dettmers et al. 2022, section 3.3) multiplies the feature
-- columns that hold an |x| >= tau in fp32 and everything else in int8 with
-- per-token (vector-wise) scales. A lower tau sends more columns through
-- fp32 (better accuracy, less int8); tau = 0 turns the decomposition off.
-- For each tau this prints the perplexity of int8:threshold=tau, its change
-- from fp32, and how many feature columns went through fp32: per layer and
-- linear input for one evaluation window (what the kernel did), and the
-- hidden dimensions whose calibrated |x| ever reaches tau (what the
-- statistics predict). Ends with a plot of perplexity against tau.
--
-- usage: qscope run scripts/int8_threshold.lua [--model DIR] [--data FILE]
--            [--windows N] [--ctx N] [--calib FILE] [--calib-windows N]
--            [--taus 0,1,2,...] [--plots=false]
-- defaults: the bundled model, eval.txt and calib.txt beside it, 8 windows
-- of 512 tokens, 8 calibration windows, taus 0,1,2,3,4,5,6,8,12.
local qs = require 'qscope'
local o = qs.args(arg, {model = '', data = '', windows = 8, ctx = 512, calib = '', calib_windows = 8,
                        taus = '0,1,2,3,4,5,6,8,12', plots = true})

local m = assert(qs.load(o.model ~= '' and o.model or nil))
local ctx = math.min(o.ctx, m.info.max_pos)
local data = {file = o.data ~= '' and o.data or nil, windows = o.windows, ctx = ctx}
local fp32 = assert(m:ppl(data))
print(('%s, %d windows of %d tokens: fp32 ppl %.4f'):format(m.info.path, o.windows, ctx, fp32))

local taus = {}
for t in o.taus:gmatch('[^,]+') do taus[#taus + 1] = assert(tonumber(t), 'bad --taus') end
local st = assert(m:calibrate{file = o.calib ~= '' and o.calib or nil, windows = o.calib_windows, ctx = ctx,
                              per_token = false})

-- hidden dimensions (inputs of q/k/v and fc1/up) whose |x| reaches tau anywhere
local function dims_over(tau)
  local seen, n = {}, 0
  for l = 0, m.info.n_layers - 1 do
    for _, site in ipairs({'attn_in', 'mlp_in'}) do
      local s = st:site(l, site)
      for c = 1, s.dim do
        if s.absmax[c] >= tau and not seen[c] then seen[c], n = true, n + 1 end
      end
    end
  end
  return n
end

local rows = {{'tau', 'ppl', 'delta', 'fp32 cols/layer (attn_in mlp_in attn_out mlp_mid)', 'hidden dims >= tau'}}
local xs, ys, errors = {}, {}, {}
for _, tau in ipairs(taus) do
  local v, err = m:variant{method = 'int8', threshold = tau}
  local p, cols
  if v then
    p, err = v:ppl(data)
    local c = v:int8_columns{file = data.file, ctx = ctx}
    if c then
      local sum = {0, 0, 0, 0}
      for l = 1, #c do
        sum[1], sum[2] = sum[1] + c[l].attn_in, sum[2] + c[l].mlp_in
        sum[3], sum[4] = sum[3] + c[l].attn_out, sum[4] + c[l].mlp_mid
      end
      cols = ('%.1f %.1f %.1f %.1f'):format(sum[1] / #c, sum[2] / #c, sum[3] / #c, sum[4] / #c)
    end
    v:close()
  end
  if p then xs[#xs + 1], ys[#ys + 1] = tau, p end
  if err then errors[#errors + 1] = ('tau %g: %s'):format(tau, err) end
  rows[#rows + 1] = {tau, p or 'n/a', p and p - fp32 or nil, cols or 'n/a', tau > 0 and dims_over(tau) or 'off'}
end
io.write(qs.table(rows))
for _, e in ipairs(errors) do print('  ' .. e) end

if o.plots and #xs >= 2 then
  print()
  qs.plot.line(xs, ys, {title = 'int8 perplexity against the threshold tau (line: fp32)',
                        hline = fp32, xlabel = 'tau', ylabel = 'ppl', height = 14})
end
