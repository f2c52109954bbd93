// Worker thread of the trainer engine (see trainer.ts).
import { writeCheckpoint } from '../model/checkpoint.ts';
import { resolveModel } from '../model/llama-source.ts';
import { serveEngine } from './engine-host.ts';
import { TrainerCore, type TrainBatch } from './trainer-core.ts';
import type { Row } from './trainer-batch.ts';
import type { SaveMeta, TrainerInit } from './trainer.ts';

serveEngine(async (init: TrainerInit) => {
  const model = resolveModel(init.source);
  const core = new TrainerCore(model.config, model.weights, { padTokenId: model.config.padTokenId ?? 0, ...init.options });
  model.weights.clear(); // the core holds its own copies
  return {
    info: async () => ({ config: model.config }),
    step: (batch: TrainBatch) => core.step(batch),
    policyLogps: (rows: Row[]) => core.policyLogps(rows),
    baseLogps: (rows: Row[]) => core.baseLogps(rows),
    weights: async () => core.weights(),
    state: async () => core.state(),
    setState: async (state: Parameters<TrainerCore['setState']>[0]) => core.setState(state),
    save: async (dir: string, meta: SaveMeta) => {
      if (!model.tokenizer) throw new Error(`trainer: cannot save ${dir}: the model has no tokenizer files (open it from a model directory or give tokenizerDir)`);
      const adapter = core.adapter();
      if (!adapter) return writeCheckpoint(dir, { config: model.config, weights: core.weights(), tokenizerFiles: model.tokenizer.files, ...meta });
      // a LoRA checkpoint: the adapter, naming the directory the trainer's frozen weights came from
      if (init.source.modelDir === undefined) throw new Error(`trainer: cannot save the LoRA adapter ${dir}: its base must be a model directory (open the trainer with modelDir)`);
      return writeCheckpoint(dir, { config: model.config, weights: new Map(), adapter: { lora: adapter.config, weights: adapter.weights, baseDir: init.source.modelDir }, tokenizerFiles: model.tokenizer.files, ...meta });
    },
    close: () => core.release(),
  };
});
