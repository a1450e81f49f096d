-- Model: loading, info, tokenizer, logits, perplexity, generation, memory,
-- lifetimes; numbers against the CLI and the transformers reference.
local T = ...
local qs = require 'qscope'
local m = assert(qs.load(T.model))

T.test('module fields', function()
  T.eq(type(qs.version), 'string')
  T.check(qs.version:match('^%d+%.%d+%.%d+$'), 'version %q', qs.version)
  T.eq(type(qs.blas), 'string')
  T.eq(qs.sites[1], 'attn_in')
  T.eq(#qs.sites, 11)
  T.eq(table.concat(qs.methods, ','), 'fp32,rtn,int8,rptq,slice')
  T.eq(qscope, qs, 'the runner preloads the global qscope')
end)

T.test('load: default model and expected failures', function()
  local d = assert(qs.load())
  T.eq(d.info.architecture, 'OPTForCausalLM')
  d:close()
  T.fails('no-such-model', qs.load, 'no-such-model')
  local dir = T.tmp('-empty')
  os.execute('mkdir -p ' .. dir)
  T.fails(dir, qs.load, dir) -- a directory without a model
  local junk = T.write(T.tmp('.gguf'), 'not a gguf file')
  local _, msg = qs.load(junk)
  T.check(msg and msg:find(junk, 1, true), 'bad file named in %q', tostring(msg))
  os.remove(junk)
  os.execute('rmdir ' .. dir)
  T.raises("bad argument #1 to 'load' (string expected, got table)", function() return qs.load({}) end)
  T.raises("bad argument #2 to 'load' (table expected, got string)", function() return qs.load(T.model, 'x') end)
end)

T.test('info equals qscope info --json', function()
  local j = T.cli_json('info ' .. T.model .. ' --json')
  local i = m.info
  T.eq(i.path, j.path)
  T.eq(i.format, j.format)
  T.eq(i.dtype, j.dtype)
  T.eq(i.arch, j.arch)
  T.eq(i.architecture, j.architecture)
  for _, k in ipairs({'d_model', 'n_layers', 'n_heads', 'n_kv_heads', 'head_dim', 'd_ff', 'vocab', 'max_pos', 'params'}) do
    T.eq(i[k], math.tointeger(j[k]), k)
  end
  T.eq(i.weight_bytes, math.tointeger(j.weight_bytes_fp32), 'weight_bytes')
  T.eq(i.kv_bytes_per_token, math.tointeger(j.kv_bytes_per_token), 'kv_bytes_per_token')
  T.eq(i.tokenizer, j.tokenizer)
  T.eq(i.act, j.act)
  T.eq(m.info, m.info, 'info is built once')
  T.eq(m.path, T.model)
  T.check(tostring(m):find('OPTForCausalLM', 1, true), tostring(m))
end)

T.test('tokenize: the reference ids', function()
  local ref = T.json(T.read(T.shared('models/opt-mini/reference/reference.json')))
  for _, p in ipairs(ref.prompts) do
    local ids = m:tokenize(p.text)
    T.eq(table.concat(ids, ' '), table.concat(p.ids, ' '), p.text)
  end
end)

T.test('tokenize equals qscope tokenize', function()
  local text = 'Tokenizers: ünïcödé, tabs\tand  spaces\n'
  local f = T.write(T.tmp('.txt'), text)
  local out = T.sh(T.qscope .. ' tokenize ' .. T.model .. ' ' .. f .. ' 2>/dev/null')
  T.eq(table.concat(m:tokenize(text), ' '), out:gsub('%s+$', ''), 'same ids as qscope tokenize')
  local plain = m:tokenize(text, false)
  T.eq(#plain, #m:tokenize(text) - 1, 'special=false drops the leading </s>')
  os.remove(f)
end)

T.test('detokenize inverts tokenize', function()
  local text = 'The Linux kernel user’s and administrator’s guide'
  T.eq(m:detokenize(m:tokenize(text)), text)
  local ids = m:tokenize(text)
  T.check(m:detokenize(ids, false):find('</s>', 1, true), 'skip_special=false keeps </s>')
  T.raises("bad argument #1 to 'detokenize' (ids: element 2 = 99999 is not a token id in [0, 4096))",
           function() return m:detokenize({1, 99999}) end)
  T.raises("element 1 = 1.5 is not a token id", function() return m:detokenize({1.5}) end)
  T.raises("bad argument #1 to 'tokenize' (string expected, got nil)", function() return m:tokenize() end)
  T.raises("bad argument #2 to 'tokenize' (boolean expected", function() return m:tokenize('x', 1) end)
end)

T.test('logits equal the transformers reference', function()
  local ref = T.json(T.read(T.shared('models/opt-mini/reference/reference.json')))
  local want = T.f32(T.shared('models/opt-mini/reference/prompt0_logits.f32'))
  local lg = m:logits(ref.prompts[1].ids)
  local n, v = table.unpack(ref.prompt0_logits_shape)
  T.eq(#lg, n)
  T.eq(#lg[1], v)
  local worst = 0
  for r = 1, n do
    local row = lg[r]
    for c = 1, v do worst = math.max(worst, math.abs(row[c] - want[(r - 1) * v + c])) end
  end
  T.check(worst < 1e-3, 'max |logit diff| = %g', worst)
  -- text is tokenized with the default specials
  local l2 = m:logits(ref.prompts[1].text)
  T.eq(l2[n][7], lg[n][7], 'string prompt = its ids')
  T.raises("bad argument #1 to 'logits' (no tokens)", function() return m:logits({}) end)
  local long = {}
  for i = 1, m.info.max_pos + 1 do long[i] = 2 end
  T.raises("bad argument #1 to 'logits' (513 tokens, the model allows 512)", function() return m:logits(long) end)
end)

T.test('ppl equals qscope ppl --json', function()
  local j = T.cli_json('ppl --data ' .. T.eval .. ' --max-windows 8 --json')
  local t0 = T.clock()
  local p = m:ppl{file = T.eval, ctx = 512, windows = 8}
  local dt = T.clock() - t0
  T.near(p, j.ppl, 1e-12, 'ppl vs CLI')
  T.near(assert(m:variant('fp32')):ppl{file = T.eval, ctx = 512, windows = 8}, j.ppl, 1e-12, 'fp32 variant vs CLI')
  local r = m:eval{file = T.eval, ctx = 512, windows = 8}
  T.near(r.nll, j.nll, 1e-12, 'nll')
  T.eq(r.tokens, 8 * 511, 'tokens scored')
  T.eq(r.windows, 8)
  T.eq(r.ctx, 512)
  T.eq(r.text_tokens, math.tointeger(j.text_tokens))
  T.check(r.tokens_per_second > 0 and r.seconds > 0, 'timings')
  T.check(dt < 3, 'C speed: 8 windows took %.2f s', dt)
end)

T.test('ppl equals the transformers reference (heldout, 8 windows)', function()
  local held = T.shared('data/heldout.txt')
  local ref = T.json(T.read(T.shared('models/opt-mini/reference/reference.json')))
  T.near(m:ppl{file = held, windows = 8}, ref.heldout.ppl_first_8_windows, 1e-5, 'transformers heldout ppl')
end)

T.test('ppl data options', function()
  local text = T.read(T.eval):sub(1, 20000)
  local a = m:ppl{text = text, ctx = 256, windows = 2}
  local ids = m:tokenize(text)
  local b = m:ppl{ids = ids, ctx = 256, windows = 2}
  T.eq(a, b, 'text = its ids')
  local c = m:ppl{ctx = 256, windows = 2} -- eval.txt beside the model
  local d = m:ppl{file = T.eval, ctx = 256, windows = 2}
  T.eq(c, d, 'default data')
  local s = m:eval{ids = ids, ctx = 256, stride = 128, windows = 3}
  T.eq(s.windows, 3)
  T.eq(s.tokens, 255 + 128 + 128, 'strided windows score only new tokens')
end)

T.test('ppl misuse raises, bad data returns nil, msg', function()
  T.raises("bad argument #1 to 'ppl' ('ctx' = 9999 is out of range [2, 512])", function() return m:ppl{ctx = 9999} end)
  T.raises("bad argument #1 to 'ppl' ('windows' expects an integer, got string)", function() return m:ppl{windows = 'x'} end)
  T.raises("'windows' expects an integer, got 1.5", function() return m:ppl{windows = 1.5} end)
  T.raises("'stride' = 600 is out of range [0, 512]", function() return m:ppl{ctx = 512, stride = 600} end)
  T.raises("'progress' expects a function, got number", function() return m:ppl{progress = 1} end)
  T.raises("give one of 'file', 'text' and 'ids'", function() return m:ppl{file = T.eval, text = 'x'} end)
  T.raises("bad argument #1 to 'ppl' (table expected, got string)", function() return m:ppl('x') end)
  -- every key is checked: a misspelling is an error naming it and the known keys; 0 windows is not "all"
  T.raises("bad argument #1 to 'ppl' (unknown option 'windowz' (options: file, text, ids, ctx, windows, stride, progress))",
           function() return m:ppl{windowz = 2} end)
  T.raises("bad argument #1 to 'ppl' ('windows' = 0 is out of range [1, 2147483647])", function() return m:ppl{windows = 0} end)
  T.raises("bad argument #1 to 'eval' (options are named, got the key [1]", function() return m:eval{2} end)
  T.raises("bad argument #1 to 'calibrate' (unknown option 'tua' (options: file, text, ids_file, offsets, ctx, windows, tau,",
           function() return m:calibrate{windows = 1, tua = 3} end)
  T.raises("bad argument #2 to 'load' (unknown option 'tokeniser' (options: tokenizer))", function() return qs.load(T.model, {tokeniser = 'x'}) end)
  T.fails('no-such-file.txt', m.ppl, m, {file = 'no-such-file.txt'})
  T.fails('fewer than one window', m.ppl, m, {text = 'too short'})
end)

T.test('progress: called per window; false cancels; errors propagate', function()
  local calls = {}
  local p = m:ppl{file = T.eval, ctx = 128, windows = 3, progress = function(done, total)
    calls[#calls + 1] = done .. '/' .. total
  end}
  T.eq(type(p), 'number')
  T.eq(table.concat(calls, ' '), '1/3 2/3 3/3')
  T.fails('cancelled', m.ppl, m, {ctx = 128, windows = 3, progress = function(done) return done < 2 end})
  local err = T.raises('boom', m.ppl, m, {ctx = 128, windows = 3, progress = function() error('boom') end})
  T.check(err:find('test_model.lua', 1, true), 'the error keeps its position: %q', err)
  local tbl = {}
  local ok, e = pcall(m.ppl, m, {ctx = 128, windows = 3, progress = function() error(tbl) end})
  T.check(not ok and e == tbl, 'error objects propagate as they are')
end)

T.test('interrupt during ppl raises "interrupted"', function()
  T.raises('interrupted', m.ppl, m, {ctx = 128, windows = 20, progress = function(done)
    if done == 2 then qs.interrupt() end
  end})
  -- nothing is left pending: the next call runs
  T.eq(type(m:ppl{ctx = 128, windows = 1}), 'number')
end)

T.test('generate equals the reference greedy text', function()
  local ref = T.json(T.read(T.shared('models/opt-mini/reference/reference.json')))
  local p = ref.prompts[1]
  local pieces = {}
  local text = m:generate(p.text, {n = 32, temp = 0, stop = false, on_token = function(piece, id)
    pieces[#pieces + 1] = piece
    T.eq(math.type(id), 'integer')
  end})
  T.eq(text, p.greedy32_text, 'greedy text')
  T.eq(table.concat(pieces), text, 'streamed pieces make the text')
end)

T.test('generate equals qscope gen', function()
  local j = T.cli_json('gen ' .. T.model .. ' ' .. T.shquote('The kernel') .. ' -n 20 --json')
  T.eq(m:generate('The kernel', {n = 20}), j.text, 'vs qscope gen')
  local j2 = T.cli_json('gen ' .. T.model .. ' ' .. T.shquote('A') .. ' -n 12 --temp 0.8 --top-p 0.9 --seed 7 --json')
  T.eq(m:generate('A', {n = 12, temp = 0.8, top_p = 0.9, seed = 7}), j2.text, 'sampled, same seed')
end)

T.test('generate: on_token false stops, errors propagate, misuse', function()
  local n = 0
  local text = m:generate('The kernel', {n = 30, on_token = function() n = n + 1 return n < 3 end})
  T.eq(n, 3, 'stopped after the third piece')
  T.check(#text > 0 and #text < #m:generate('The kernel', {n = 30}), 'shorter text')
  T.raises('oops', m.generate, m, 'x', {on_token = function() error('oops') end})
  T.raises("bad argument #2 to 'generate' ('temp' = -1 is out of range [0, 100])", function() return m:generate('x', {temp = -1}) end)
  T.raises("'n' = 0 is out of range", function() return m:generate('x', {n = 0}) end)
  T.raises("bad argument #2 to 'generate' (unknown option 'top_n' (options: n, temp, top_k, top_p, seed, stop, on_token))",
           function() return m:generate('x', {top_n = 3}) end)
  T.raises("bad argument #1 to 'generate' (string expected, got table)", function() return m:generate({}) end)
  T.eq(type(m:generate('', {n = 3})), 'string', 'empty prompt starts from BOS')
end)

T.test('memory equals the CLI accounting', function()
  local j = T.cli_json('info ' .. T.model .. ' --json')
  local mem = m:memory()
  T.eq(mem.weight_bytes, math.tointeger(j.weight_bytes_fp32))
  T.eq(mem.kv_bytes_per_token, math.tointeger(j.kv_bytes_per_token))
  T.eq(mem.params, math.tointeger(j.params))
end)

T.test('closed models fail loudly', function()
  local c = assert(qs.load(T.model))
  c:close()
  T.raises('attempt to use a closed Model', function() return c:tokenize('x') end)
  T.raises('attempt to use a closed Model', function() return c.info end)
  T.raises('attempt to use a closed Model', function() return c:ppl() end)
  T.raises('attempt to use a closed Model', function() return c:variant('fp32') end)
  T.raises('attempt to use a closed Model', function() return c:calibrate() end)
  T.raises('attempt to use a closed Model', function() return c:generate('x') end)
  c:close() -- twice is fine
  T.eq(tostring(c), 'Model (closed)')
  do
    local s <close> = assert(qs.load(T.model))
    c = s
  end
  T.raises('attempt to use a closed Model', function() return c:tokenize('x') end)
  T.raises("bad argument #1 to 'tokenize' (qscope.Model expected, got table)", function() return m.tokenize({}, 'x') end)
end)
