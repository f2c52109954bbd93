import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BUILTIN_TOKENIZERS, Tokenizer, builtinTokenizerDir } from '../../src/model/tokenizer.ts';

interface Expected {
  vocab_size: number;
  special_tokens: Record<string, number>;
  cases: Array<{ text: string; pre_tokens: string[]; ids: number[]; ids_no_special: number[]; decoded: string; decoded_skip_special: string }>;
}

function load(name: string): { tok: Tokenizer; expected: Expected } {
  const expected = JSON.parse(readFileSync(new URL(`../fixtures/tokenizer/${name}-expected.json`, import.meta.url), 'utf8')) as Expected;
  return { tok: Tokenizer.fromDir(builtinTokenizerDir(name as 'llama3')), expected };
}

for (const name of BUILTIN_TOKENIZERS) {
  test(`${name}: regex pre-tokenization equals Python tokenizers on hard strings`, () => {
    const { tok, expected } = load(name);
    assert.ok(expected.cases.length >= 20);
    for (const c of expected.cases) assert.deepEqual(tok.preTokenize(c.text), c.pre_tokens, JSON.stringify(c.text));
  });

  test(`${name}: ids equal Python tokenizers with and without special tokens`, () => {
    const { tok, expected } = load(name);
    for (const c of expected.cases) {
      assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
      assert.deepEqual(tok.encode(c.text, { addSpecialTokens: false }), c.ids_no_special, JSON.stringify(c.text));
    }
  });

  test(`${name}: decode equals Python tokenizers (with and without specials) and round-trips text`, () => {
    const { tok, expected } = load(name);
    for (const c of expected.cases) {
      assert.equal(tok.decode(c.ids), c.decoded, JSON.stringify(c.text));
      assert.equal(tok.decode(c.ids, { skipSpecialTokens: true }), c.decoded_skip_special, JSON.stringify(c.text));
      if (name === 'llama3') assert.equal(tok.decode(c.ids_no_special), c.text, 'byte-level BPE is lossless');
    }
  });

  test(`${name}: special tokens, vocab size and ids beyond the tokenizer's vocab`, () => {
    const { tok, expected } = load(name);
    assert.equal(tok.vocabSize, expected.vocab_size);
    assert.deepEqual(Object.fromEntries(tok.specialTokens), expected.special_tokens);
    const hello = tok.encode('hello', { addSpecialTokens: false });
    // A model vocab may exceed the tokenizer's; unknown ids decode to nothing, as in Rust tokenizers.
    assert.equal(tok.decode([...hello, tok.vocabSize, tok.vocabSize + 5000]), 'hello');
    assert.equal(tok.decode([]), '');
  });
}

test('llama3 adds BOS, qwen2 adds nothing; bos/eos/pad come from tokenizer_config.json', () => {
  const llama = load('llama3').tok;
  const qwen = load('qwen2').tok;
  assert.equal(llama.bosTokenId, llama.tokenToId('<|begin_of_text|>'));
  assert.equal(llama.eosTokenId, llama.tokenToId('<|eot_id|>'));
  assert.equal(llama.encode('hi')[0], llama.bosTokenId);
  assert.equal(qwen.bosTokenId, null);
  assert.equal(qwen.eosTokenId, qwen.tokenToId('<|im_end|>'));
  assert.deepEqual(qwen.encode('hi'), qwen.encode('hi', { addSpecialTokens: false }));
  assert.equal(qwen.idToToken(qwen.eosTokenId!), '<|im_end|>');
});

test('a tokenizer_config.json naming a token outside the vocab is an error naming the file', () => {
  const dir = builtinTokenizerDir('qwen2');
  const tokenizerJson = readFileSync(`${dir}tokenizer.json`, 'utf8');
  assert.throws(
    () => new Tokenizer({ tokenizerJson, tokenizerConfig: '{"eos_token": "<|nope|>"}' }, 'x/tokenizer.json'),
    /x\/tokenizer\.json: tokenizer_config\.json eos_token "<\|nope\|>" is not in the vocabulary/,
  );
  assert.throws(() => new Tokenizer({ tokenizerJson, tokenizerConfig: '{"eos_token": ' }, 'x/tokenizer.json'), /x\/tokenizer_config\.json: not valid JSON/);
  assert.throws(() => new Tokenizer({ tokenizerJson: '{}', tokenizerConfig: null }, 'x/tokenizer.json'), /x\/tokenizer\.json: cannot build the tokenizer/);
  assert.throws(() => Tokenizer.fromDir('/nonexistent-dir'), /nonexistent-dir\/tokenizer\.json: cannot read/);
});
