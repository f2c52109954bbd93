/**
 * A Hugging Face model directory in and out: config.json, model.safetensors (or shards),
 * generation_config.json, tokenizer.json, tokenizer_config.json (+ chat_template.jinja).
 *
 * loadModel checks every tensor the config implies against the weights (names and shapes from
 * `llamaParameterShapes`, the one list the graphs, the trainer and init share) before anything runs.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChatTemplate } from './chat-template.ts';
import { formatJson, generationConfigJson, readHfConfig, writeHfConfig } from './hf-config.ts';
import type { LlamaConfig } from './llama-config.ts';
import { llamaParameterShapes } from './llama-graph.ts';
import { readSafetensorsDir, SINGLE_FILE_NAME, type TensorSpec, writeSafetensors } from './safetensors.ts';
import type { Weights } from './tensor.ts';
import { readTokenizerFiles, Tokenizer, type TokenizerFiles } from './tokenizer.ts';

export { llamaParameterShapes };

export interface LoadedModel {
  dir: string;
  config: LlamaConfig;
  weights: Weights;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate | null;
}

const FLOAT_DTYPES = new Set(['float32', 'float16', 'bfloat16']);
/** Tensors some checkpoints carry that transformers ignores on load. */
const IGNORED = [/^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/];

/** Throws, naming `source` and every problem, unless `weights` has exactly the tensors `config` implies. */
export function validateWeights(config: LlamaConfig, weights: ReadonlyMap<string, TensorSpec>, source: string): void {
  const expected = llamaParameterShapes(config);
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const t = weights.get(name);
    if (!t) problems.push(`missing tensor ${name} [${shape}]`);
    else if (t.shape.join(',') !== shape.join(',')) problems.push(`${name} has shape [${t.shape}], the config implies [${shape}]`);
    else if (!FLOAT_DTYPES.has(t.dtype)) problems.push(`${name} has dtype ${t.dtype}, expected float32, float16 or bfloat16`);
  }
  for (const name of weights.keys()) {
    if (expected.has(name) || IGNORED.some((re) => re.test(name))) continue;
    // A tied model may still carry lm_head.weight (transformers ties it to the embedding and ignores it).
    if (name === 'lm_head.weight' && config.tieWordEmbeddings) continue;
    problems.push(`unexpected tensor ${name}`);
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 8).join('; ');
    const more = problems.length > 8 ? `; and ${problems.length - 8} more` : '';
    throw new Error(`${source}: weights do not match config.json (${config.architecture}, ${config.numLayers} layers): ${shown}${more}`);
  }
}

/** eos ids from generation_config.json, which is what `generate()` stops on, when it names any. */
function generationEos(dir: string): number[] | null {
  const path = join(dir, 'generation_config.json');
  if (!existsSync(path)) return null;
  let json: { eos_token_id?: unknown };
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  const eos = json.eos_token_id;
  if (eos === undefined || eos === null) return null;
  const ids = Array.isArray(eos) ? eos : [eos];
  if (!ids.every((id) => Number.isSafeInteger(id) && id >= 0)) throw new Error(`${path}: "eos_token_id" must be a token id or a list of them, got ${JSON.stringify(eos)}`);
  return ids as number[];
}

/** Loads and validates a model directory. */
export function loadModel(dir: string): LoadedModel {
  if (!existsSync(dir)) throw new Error(`${dir}: model directory does not exist`);
  const config = readHfConfig(join(dir, 'config.json'));
  const eos = generationEos(dir);
  if (eos) config.eosTokenIds = eos;
  const { weights } = readSafetensorsDir(dir);
  validateWeights(config, weights, dir);
  const tokenizer = Tokenizer.fromDir(dir);
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new Error(`${join(dir, 'tokenizer.json')}: the tokenizer has ${tokenizer.vocabSize} ids but config.json vocab_size is ${config.vocabSize}`);
  }
  const chatTemplate = ChatTemplate.fromTokenizerConfig(tokenizer.config, tokenizer.files.chatTemplateJinja, join(dir, 'tokenizer_config.json'));
  return { dir, config, weights, tokenizer, chatTemplate };
}

export interface SaveModelInput {
  config: LlamaConfig;
  weights: Weights;
  tokenizerFiles: TokenizerFiles;
}

/**
 * Writes a loadable model directory (validating the weights first): config.json, model.safetensors
 * (metadata {"format": "pt"}, as transformers expects), generation_config.json and the tokenizer files.
 */
export function saveModel(dir: string, model: SaveModelInput): void {
  validateWeights(model.config, model.weights, dir);
  mkdirSync(dir, { recursive: true });
  const embed = model.weights.get('model.embed_tokens.weight')!;
  writeHfConfig(join(dir, 'config.json'), model.config, { dtype: embed.dtype });
  writeFileSync(join(dir, 'generation_config.json'), formatJson(generationConfigJson(model.config)));
  writeSafetensors(join(dir, SINGLE_FILE_NAME), model.weights, { format: 'pt' });
  writeFileSync(join(dir, 'tokenizer.json'), model.tokenizerFiles.tokenizerJson);
  if (model.tokenizerFiles.tokenizerConfig !== null) writeFileSync(join(dir, 'tokenizer_config.json'), model.tokenizerFiles.tokenizerConfig);
  if (model.tokenizerFiles.chatTemplateJinja) writeFileSync(join(dir, 'chat_template.jinja'), model.tokenizerFiles.chatTemplateJinja);
}

/** The model directory's chat template, if it has one, without loading weights. */
export function readChatTemplate(dir: string): ChatTemplate | null {
  const files = readTokenizerFiles(dir);
  const config = files.tokenizerConfig ? (JSON.parse(files.tokenizerConfig) as Record<string, unknown>) : {};
  return ChatTemplate.fromTokenizerConfig(config, files.chatTemplateJinja, join(dir, 'tokenizer_config.json'));
}
