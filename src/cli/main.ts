import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';

/**
 * One file per command under src/cli/commands/, each exporting `register(program)`.
 * Commands import their heavy modules (onnxruntime, kafkajs, ...) inside their action, so
 * `dice --help` stays fast.
 */
export async function main(argv: string[]): Promise<void> {
  exitQuietlyOnClosedPipe();
  const program = new Command('dice')
    .description('DICE: self-alignment of a DPO-tuned LM with its own implicit rewards, as a dataflow over topics')
    .showHelpAfterError()
    // Program options (-V/--version) only before the command, so a command's own --version is its own.
    .enablePositionalOptions()
    .exitOverride();
  const dir = fileURLToPath(new URL('./commands/', import.meta.url));
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts')).sort()) {
    const mod = await import(new URL(`./commands/${file}`, import.meta.url).href);
    mod.register(program);
  }
  // An error escaping a callback (a timer, a stream) is reported like one from the command: its message, no stack trace.
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode);
    fail(err);
  }
}

function fail(err: unknown): never {
  console.error(`dice: ${err instanceof Error ? err.message : String(err)}`);
  if (process.env.DICE_DEBUG && err instanceof Error) console.error(err.stack);
  process.exit(1);
}

/** `dice tail … | head`: when the reader goes away, stop as Unix tools do — no EPIPE stack trace. */
function exitQuietlyOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0);
      throw err;
    });
  }
}
