/**
 * bench:train --lora SPEC — one DPO optimizer step with a LoRA adapter on frozen weights, next to
 * full fine-tuning of the same model on the same batch (ours), and next to PyTorch + peft doing the
 * LoRA step (tools/bench_train_torch.py --lora) and PyTorch doing the full step:
 *
 *   npm run bench:train -- --lora r=16,alpha=32,targets=q,k,v,o,gate,up,down --shapes smollm2-135m --cases 8x256
 *
 * Each of the four runs is its own child process, one after another (so peak RSS is its own and
 * never two big runs at once); step times are medians after one warm-up step.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseLoraFlag } from '../src/cli/lora-flag.ts';
import { namedShape } from '../src/model/named-shapes.ts';
import { loraParameterShapes } from '../src/model/lora.ts';
import { llamaParameterShapes } from '../src/model/llama-graph.ts';

interface Options {
  shapes: string[];
  cases: string[];
  threads: number;
  steps: number;
  microBatch?: number;
  lora: string;
  torch: boolean;
}

interface Run {
  stepSeconds: number;
  steps: number[];
  peakRssMb: number;
  loss: number;
  batchFile?: string;
  modelDir?: string;
}

const load = () => loadavg()[0].toFixed(1);
const count = (shapes: Map<string, number[]>) => [...shapes.values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);

function python(): string | null {
  return [process.env.DICE_PYTHON, '/work/.venv/bin/python', '/work/pyenv/bin/python'].find((p): p is string => !!p && existsSync(p)) ?? null;
}

function result(stdout: string, what: string, stderr: string): Run | null {
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) {
    console.error(`${what}: failed\n${stderr.split('\n').filter((l) => !l.includes('W:onnxruntime')).slice(-10).join('\n')}`);
    return null;
  }
  return JSON.parse(line.slice(7)) as Run;
}

export async function loraBench(o: Options): Promise<void> {
  const lora = parseLoraFlag(o.lora);
  const py = o.torch ? python() : null;
  const trainBench = fileURLToPath(new URL('./train.ts', import.meta.url));
  console.log(`bench:train --lora ${o.lora}  threads=${o.threads}  steps=${o.steps} (+1 warm-up)  ${py ? `peer: ${py} (PyTorch, peft)` : 'no PyTorch peer'}`);
  const rows: string[] = [];
  for (const shape of o.shapes) {
    const config = namedShape(shape).config;
    const trainable = count(loraParameterShapes(config, lora));
    console.log(`${shape}: ${count(llamaParameterShapes(config)).toLocaleString('en-US')} weights; the adapter trains ${trainable.toLocaleString('en-US')} (AdamW state ${((trainable * 8) / 2 ** 20).toFixed(1)} MiB)`);
    for (const kase of o.cases) {
      const ours = (withLora: boolean) => {
        // the child reads --no-spin and --no-share itself (bench/train.ts)
        const passed = process.argv.filter((a) => a === '--no-spin' || a === '--no-share');
        const args = ['--import', 'tsx', trainBench, '--child', shape, kase, '--threads', String(o.threads), '--steps', String(o.steps), '--micro-batch', String(o.microBatch ?? 0), ...passed];
        const r = spawnSync(process.execPath, withLora ? [...args, '--lora', o.lora] : args, { encoding: 'utf8', maxBuffer: 1 << 26 });
        return result(r.stdout, `ours ${withLora ? 'LoRA' : 'full'} ${shape} ${kase}`, r.stderr);
      };
      const loads = [load()];
      const full = ours(false);
      loads.push(load());
      const adapted = ours(true);
      loads.push(load());
      const peer = (withLora: boolean, ref: Run | null) => {
        if (!py || !ref?.batchFile) return null;
        const args = ['tools/bench_train_torch.py', '--model', ref.modelDir!, '--batch', ref.batchFile, '--threads', String(o.threads), '--steps', String(o.steps), '--micro-batch', String(o.microBatch ?? 0)];
        const r = spawnSync(py, withLora ? [...args, '--lora', o.lora] : args, { encoding: 'utf8', maxBuffer: 1 << 26 });
        return result(r.stdout, `PyTorch ${withLora ? '+ peft LoRA' : 'full'} ${shape} ${kase}`, r.stderr);
      };
      const torchLora = peer(true, adapted ?? full);
      loads.push(load());
      const torchFull = peer(false, full ?? adapted);
      loads.push(load());
      const cell = (r: Run | null) => (r ? `${r.stepSeconds.toFixed(3)}s ${r.peakRssMb.toFixed(0)}MB` : '-').padStart(17);
      const ratio = (a: Run | null, b: Run | null) => (a && b ? (a.stepSeconds / b.stepSeconds).toFixed(2) : '-').padStart(6);
      rows.push(
        [shape.padEnd(13), kase.padEnd(6), cell(adapted), cell(full), ratio(full, adapted), cell(torchLora), ratio(torchLora, adapted), cell(torchFull), loads.join('/').padStart(24)].join('  '),
      );
      console.log(rows[rows.length - 1]);
      const list = (name: string, r: Run | null) => (r ? `${name} ${r.steps.map((x) => x.toFixed(2)).join(' ')}` : '');
      console.log(`  steps: ${[list('ours LoRA', adapted), list('ours full', full), list('peft', torchLora), list('torch full', torchFull)].filter(Boolean).join('  ')}`);
      if (adapted && torchLora) console.log(`  loss after the steps: ours LoRA ${adapted.loss.toFixed(5)}, peft ${torchLora.loss.toFixed(5)} (A is initialised by different generators; B = 0 on both)`);
    }
  }
  console.log('\nshape          case    ours LoRA (step, RSS)  ours full        full/LoRA  PyTorch+peft LoRA  peft/ours  PyTorch full      load avg (1 min)');
  for (const r of rows) console.log(r);
  console.log('full/LoRA: our full fine-tuning step time / our LoRA step. peft/ours: PyTorch+peft LoRA step / ours (≥ 1: ours is faster).');
  console.log('load avg: before, then after each run (ours full, ours LoRA, peft, torch full) — the machine is shared and timings swing with load.');
}
