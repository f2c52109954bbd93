// Worker thread of the sampler engine (see sampler.ts).
import { encodePrompt } from '../model/llama-prompt.ts';
import { resolveModel } from '../model/llama-source.ts';
import { serveEngine } from './engine-host.ts';
import { DEFAULT_SAMPLING, SamplerCore, type GenerateParams } from './sampler-core.ts';
import type { EngineOptions, SampleRequest, SampleResult } from './sampler.ts';

serveEngine(async (init: EngineOptions) => {
  const model = resolveModel(init);
  const core = await SamplerCore.create(model.config, model.weights, { threads: init.threads ?? 1, provider: init.provider ?? 'cpu', spinning: init.spinning }, true, init.modelDir);
  return {
    info: async () => ({ config: model.config, hasTokenizer: model.tokenizer !== null, hasChatTemplate: model.chatTemplate !== null }),
    generate: async (requests: SampleRequest[], params: Partial<GenerateParams>): Promise<SampleResult[]> => {
      const encoded = requests.map((r) => {
        try {
          return { ids: encodePrompt(r, model, `prompt ${r.promptId}`) };
        } catch (err) {
          return { ids: [], error: (err as Error).message };
        }
      });
      const ok = requests.map((_, i) => i).filter((i) => !encoded[i].error);
      const generated = await core.generate(
        ok.map((i) => ({ promptId: requests[i].promptId, promptTokenIds: encoded[i].ids, k: requests[i].k, seed: requests[i].seed })),
        { ...DEFAULT_SAMPLING, ...params },
      );
      const results: SampleResult[] = requests.map((r, i) => ({ promptId: r.promptId, promptTokenIds: encoded[i].ids, samples: [], error: encoded[i].error }));
      ok.forEach((i, j) => {
        const g = generated[j];
        results[i].error = g.error;
        results[i].samples = g.samples.map((s) => ({ ...s, text: model.tokenizer ? model.tokenizer.decode(s.tokenIds, { skipSpecialTokens: true }) : null }));
      });
      for (const r of results) if (r.error === undefined) delete r.error;
      return results;
    },
    close: () => core.release(),
  };
});
