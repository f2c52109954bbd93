import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { floatArg, intArg } from './generate.ts';
import { loraFlag } from '../lora-flag.ts';
import type { TrainCliOptions } from '../train-command.ts';

/**
 * `dice train`: DPO-family (or SFT) training of a model directory on a record file; writes an HF
 * checkpoint with manifest.json. Reference log-probs come from --ref DIR (a scoring pass of the
 * reference model), from --ref-logps FILE, or inline in the pairs file (ref_chosen_logp/ref_rejected_logp).
 */

const LOSSES = ['dpo', 'ipo', 'hinge', 'kto', 'sft', 'rdpo'];

export function register(program: Command): void {
  program
    .command('train')
    .description('train a model directory with DPO, IPO, hinge, KTO, length-regularised DPO (rdpo) or SFT; writes a checkpoint')
    .requiredOption('--model <dir>', 'Hugging Face model directory to start from (the policy)')
    .option('--ref <dir>', 'reference model directory (scored once for reference log-probs)')
    .option('--ref-logps <file>', 'record file of {id?, ref_chosen_logp, ref_rejected_logp}, by id or in order')
    .requiredOption('--pairs <file>', 'JSONL/JSON/Parquet: {prompt, chosen, rejected} (or token ids); {prompt, completion} for --loss sft')
    .option('--loss <kind>', `loss: ${LOSSES.join(', ')}`, (v: string) => {
      if (!LOSSES.includes(v)) throw new InvalidArgumentError(`must be one of ${LOSSES.join(', ')}`);
      return v;
    }, 'dpo')
    .option('--beta <b>', 'β of the DPO-family losses', floatArg(1e-9, 1e9), 0.1)
    .option('--alpha <a>', 'length penalty α of rdpo (per character of the response)', floatArg(0, 1e9), 0)
    .option('--steps <n>', 'optimizer steps', intArg(1), 100)
    .option('--batch <n>', 'pairs (or SFT examples) per step', intArg(1), 32)
    .option('--micro-batch <n>', 'pairs per onnxruntime run (gradients accumulated); default: the whole batch', intArg(1))
    .option('--lr <lr>', 'peak learning rate', floatArg(0, 10), 5e-7)
    .option('--warmup <n>', 'linear warm-up steps of the constant schedule', intArg(0), 50)
    .option('--weight-decay <w>', 'AdamW decoupled weight decay', floatArg(0, 10), 0)
    .option('--max-grad-norm <n>', 'clip gradients to this global norm (0: no clipping)', floatArg(0, 1e9), 1)
    .requiredOption('--out <dir>', 'checkpoint directory to write')
    .option('--seed <n>', 'seed of the batch order', intArg(0), 0)
    .option('--threads <n>', 'onnxruntime intra-op threads (fixed for determinism)', intArg(1), 1)
    .option('--provider <ep>', 'execution provider: cpu, webgpu, cuda', 'cpu')
    .option('--chat', 'render text prompts through the chat template (default: when the model has one)')
    .option('--no-chat', 'use prompt text as is')
    .option('--version <v>', 'version recorded in the checkpoint manifest', 'v1')
    .option('--json', 'print one JSON line of metrics per step')
    .option('--lora <spec>', 'train a LoRA adapter (PEFT format) on frozen weights, e.g. r=16,alpha=32,targets=q,k,v,o,gate,up,down; its reference is the base (adapter off) unless --ref/--ref-logps', loraFlag)
    .action(async (opts: TrainCliOptions) => {
      const { samePath } = await import('../../util/same-path.ts');
      for (const [flag, dir] of [['--model', opts.model], ['--ref', opts.ref]] as const) {
        if (dir !== undefined && samePath(dir, opts.out)) throw new Error(`--out ${opts.out} is the ${flag} directory: training would overwrite its input; choose another --out`);
      }
      const { runTrainCommand } = await import('../train-command.ts');
      await runTrainCommand(opts);
    });
}

