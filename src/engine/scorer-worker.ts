// Worker thread of the scorer engine (see scorer.ts).
import { encodePrompt } from '../model/llama-prompt.ts';
import { resolveModel } from '../model/llama-source.ts';
import { serveEngine } from './engine-host.ts';
import { ScorerCore, type ScoreParams } from './scorer-core.ts';
import type { EngineOptions } from './sampler.ts';
import type { ScoreOutput, ScoreRequest } from './scorer.ts';

serveEngine(async (init: EngineOptions) => {
  const model = resolveModel(init);
  const core = await ScorerCore.create(model.config, model.weights, { threads: init.threads ?? 1, provider: init.provider ?? 'cpu', spinning: init.spinning }, true, init.modelDir);
  const encodeResponse = (r: ScoreRequest, i: number): number[] => {
    if (r.responseTokenIds) return r.responseTokenIds;
    if (r.response === undefined) throw new Error(`score item ${i}: give responseTokenIds or response`);
    if (!model.tokenizer) throw new Error(`score item ${i}: a text response needs a tokenizer, and this model has none`);
    const ids = model.tokenizer.encode(r.response, { addSpecialTokens: false });
    if (r.appendEos === false) return ids;
    const eos = model.config.eosTokenIds[0];
    if (eos === undefined) throw new Error(`score item ${i}: the model has no EOS id to append (pass appendEos: false)`);
    return [...ids, eos];
  };
  return {
    info: async () => ({ config: model.config, hasTokenizer: model.tokenizer !== null, hasChatTemplate: model.chatTemplate !== null }),
    score: async (items: ScoreRequest[], params: ScoreParams): Promise<ScoreOutput[]> => {
      const encoded = items.map((r, i) => ({ promptTokenIds: encodePrompt(r, model, `score item ${i}`), responseTokenIds: encodeResponse(r, i) }));
      const scored = await core.score(encoded, params);
      return scored.map((s, i) => ({ ...s, ...encoded[i] }));
    },
    close: () => core.release(),
  };
});
