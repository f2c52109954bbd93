import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { llamaParameterShapes } from '../../src/model/llama-graph.ts';
import { accName, buildGradsGraph, gradName } from '../../src/engine/trainer-graph.ts';

// Structure the trainer relies on for speed and memory (values are checked against PyTorch in torch-fixtures.test.ts).
const config = readHfConfig(join(import.meta.dirname, '..', 'fixtures', 'llama', 'llama-gqa-untied', 'config.json'));
const spec = { config, dtype: 'float32' as const, loss: 'dpo' as const, beta: 0.1 };
const names = [...llamaParameterShapes(config).keys()];

test('parameter-sized outputs are written by the nodes that compute them (no Identity copies)', () => {
  for (const g of [buildGradsGraph(spec), buildGradsGraph(spec, { accumulate: true })]) {
    const identities = g.nodes.filter((n) => n.opType === 'Identity').flatMap((n) => n.outputs);
    const paramOutputs = identities.filter((o) => o.startsWith('grad.'));
    assert.deepEqual(paramOutputs, [], `${g.name}: ${paramOutputs.slice(0, 3).join(', ')} copied by Identity`);
    const produced = new Set(g.nodes.flatMap((n) => n.outputs));
    for (const o of g.outputs) assert.ok(produced.has(o.name), `${g.name}: output ${o.name} has no producer`);
  }
});

test('the accumulating grads graph adds each gradient to acc.<name>', () => {
  const g = buildGradsGraph(spec, { accumulate: true });
  const inputs = new Set(g.inputs.map((i) => i.name));
  for (const name of names) {
    assert.ok(inputs.has(accName(name)), `no input ${accName(name)}`);
    const node = g.nodes.find((n) => n.outputs.includes(gradName(name)))!;
    assert.equal(node.opType, 'Add');
    assert.ok(node.inputs.includes(accName(name)));
  }
});
