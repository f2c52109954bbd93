import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ChatTemplate, type ChatMessage } from '../../src/model/chat-template.ts';
import { Tokenizer, builtinTokenizerDir } from '../../src/model/tokenizer.ts';

const fixture = JSON.parse(readFileSync(new URL('../fixtures/tokenizer/chat-expected.json', import.meta.url), 'utf8')) as {
  cases: Array<{ tokenizer: 'llama3' | 'qwen2'; messages: ChatMessage[]; add_generation_prompt: boolean; text: string; ids: number[] }>;
};

test('chat templates render and tokenize exactly as transformers apply_chat_template', () => {
  assert.ok(fixture.cases.length >= 12);
  for (const c of fixture.cases) {
    const tok = Tokenizer.fromDir(builtinTokenizerDir(c.tokenizer));
    const template = ChatTemplate.fromTokenizerConfig(tok.config, tok.files.chatTemplateJinja)!;
    const text = template.render(c.messages, { addGenerationPrompt: c.add_generation_prompt });
    const label = `${c.tokenizer} ${JSON.stringify(c.messages)} gen=${c.add_generation_prompt}`;
    assert.equal(text, c.text, label);
    assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), c.ids, label);
  }
});

test('chat template sources: none, a jinja file, a named list; bad templates and raise_exception are errors', () => {
  assert.equal(ChatTemplate.fromTokenizerConfig({}), null);
  const fromFile = ChatTemplate.fromTokenizerConfig({ chat_template: 'ignored', eos_token: '</s>' }, '{{ messages[0].content }}{{ eos_token }}')!;
  assert.equal(fromFile.render([{ role: 'user', content: 'hi' }]), 'hi</s>');
  const listed = ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D{{ add_generation_prompt }}' }] })!;
  assert.equal(listed.render([], { addGenerationPrompt: true }), 'Dtrue');
  assert.throws(() => ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'x', template: 'T' }] }, null, 'm/tokenizer_config.json'), /m\/tokenizer_config\.json: chat_template is a list without a "default" entry/);
  assert.throws(() => ChatTemplate.fromTokenizerConfig({ chat_template: '{% for %}' }, null, 'm/tokenizer_config.json'), /m\/tokenizer_config\.json: cannot parse the chat template/);
  const strict = new ChatTemplate("{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok");
  assert.equal(strict.render([{ role: 'user', content: 'x' }]), 'ok');
  assert.throws(() => strict.render([{ role: 'assistant', content: 'x' }]), /first message must be from the user/);
});
