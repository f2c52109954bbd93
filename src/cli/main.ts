import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';

/**
 * One file per command under src/cli/commands/, each exporting `register(program)`.
 * Commands import their heavy modules (onnxruntime, kafkajs, ...) inside their action, so
 * `dice --help` stays fast.
 */
export async function main(argv: string[]): Promise<void> {
  const program = new Command('dice')
    .description('DICE: self-alignment of a DPO-tuned LM with its own implicit rewards, as a dataflow over topics')
    .showHelpAfterError()
    .exitOverride();
  const dir = fileURLToPath(new URL('./commands/', import.meta.url));
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts')).sort()) {
    const mod = await import(new URL(`./commands/${file}`, import.meta.url).href);
    mod.register(program);
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode);
    console.error(`dice: ${err instanceof Error ? err.message : String(err)}`);
    if (process.env.DICE_DEBUG && err instanceof Error) console.error(err.stack);
    process.exit(1);
  }
}
