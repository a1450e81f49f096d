-- Tensor: shape, 1-based indexing, row views, reductions, read-only.
local T = ...
local qs = require 'qscope'
local m = assert(qs.load(T.model))

-- logits of a short prompt: a [n, vocab] Tensor to look at
local ids = m:tokenize('The kernel scheduler')
local lg = m:logits(ids)

T.test('shape and length', function()
  local sh = lg:shape()
  T.eq(#sh, 2, 'dims')
  T.eq(sh[1], #ids, 'rows')
  T.eq(sh[2], m.info.vocab, 'cols')
  T.eq(#lg, #ids, '#t')
  T.eq(#lg[1], m.info.vocab, '#row')
  T.eq(#lg[1]:shape(), 1, 'a row is 1-D')
end)

T.test('indexing is 1-based, nil outside', function()
  local row = lg[1]
  T.eq(type(row[1]), 'number')
  T.eq(row[0], nil, 't[0]')
  T.eq(row[#row + 1], nil, 't[n+1]')
  T.eq(lg[0], nil, 'row 0')
  T.eq(lg[#lg + 1], nil, 'row n+1')
  T.eq(row['x'], nil, 'string key')
  local n = 0
  for _, v in ipairs(row) do n = n + 1 end
  T.eq(n, #row, 'ipairs covers the row')
end)

T.test('totable matches indexing', function()
  local t = lg:totable()
  T.eq(#t, #lg)
  for r = 1, #lg do
    T.eq(#t[r], m.info.vocab)
    for _, c in ipairs({1, 2, 100, m.info.vocab}) do T.eq(t[r][c], lg[r][c], ('[%d][%d]'):format(r, c)) end
  end
  local row = lg[2]:totable()
  T.eq(row[7], lg[2][7])
end)

T.test('min, max, argmax agree with a scan', function()
  local row = lg[#lg]
  local lo, hi, arg = math.huge, -math.huge, nil
  for i = 1, #row do
    local v = row[i]
    lo = math.min(lo, v)
    if v > hi then hi, arg = v, i end
  end
  T.eq(row:min(), lo, 'min')
  T.eq(row:max(), hi, 'max')
  T.eq(row:argmax(), arg, 'argmax')
  -- 2-D: i, j of the largest element
  local i, j = lg:argmax()
  T.eq(lg[i][j], lg:max(), '2-D argmax')
  for r = 1, #lg do T.check(lg[r]:max() <= lg:max(), 'row max above the tensor max') end
end)

T.test('argmax is the greedy next token (reference top-1)', function()
  local ref = T.json(T.read(T.shared('models/opt-mini/reference/reference.json')))
  local p = ref.prompts[1]
  local l = m:logits(p.ids)
  T.eq(l[#l]:argmax() - 1, p.last_top5[1], 'top-1 id')
  T.near(l[#l]:max(), p.last_top5_logits[1], 1e-3, 'top-1 logit')
end)

T.test('a row view keeps its tensor alive', function()
  local row = m:logits(ids)[2]
  collectgarbage()
  collectgarbage()
  T.eq(#row, m.info.vocab)
  T.eq(row[5], lg[2][5], 'the view still reads the logits')
end)

T.test('read-only, no arithmetic', function()
  T.raises('read-only', function() lg[1][1] = 0 end)
  T.raises('read-only', function() lg[1] = 0 end)
  T.raises('arithmetic', function() return lg + 1 end)
end)

T.test('tostring is a short summary', function()
  local s = tostring(lg)
  T.check(s:find(('Tensor[%d, %d] f32'):format(#ids, m.info.vocab), 1, true), 'summary %q', s)
  T.check(s:find('min', 1, true) and s:find('max', 1, true), 'summary has min and max: %q', s)
  T.check(#s < 100, 'short')
end)

T.test('float64 tensors (statistics)', function()
  local st = assert(m:calibrate{windows = 1, ctx = 64})
  local s = st:site(0, 'attn_in')
  T.check(tostring(s.mean):find('f64', 1, true), 'mean is f64')
  T.eq(#s.mean, m.info.d_model)
  T.check(tostring(s.min):find('f32', 1, true), 'min is f32')
end)

T.test('misuse names the argument', function()
  T.raises("bad argument #1 to 'shape' (qscope.Tensor expected, got number)", function() return lg.shape(42) end)
  T.raises("calling 'min' on bad self (qscope.Tensor expected, got table)", function() local t = {min = lg.min} return t:min() end)
end)
