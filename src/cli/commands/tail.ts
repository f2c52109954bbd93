import type { Command } from 'commander';
import { BUS_OPTION } from '../../../topics/open-bus.ts';

interface TailOptions {
  bus: string;
  topic: string;
  fromBeginning?: boolean;
  json?: boolean;
  group?: string;
  limit?: string;
  untilEnd?: boolean;
}

export function register(program: Command): void {
  program
    .command('tail')
    .description('print the records of a topic as they arrive, decoded by the topic contract')
    .requiredOption('--topic <name>', 'topic, e.g. samples or <namespace>.metrics')
    .option('--from-beginning', 'start at the first record (default: only records arriving from now on)')
    .option('--json', 'one JSON object per record: topic, partition, offset, key, timestamp, value')
    .option('--until-end', 'stop at the end of the topic as it is now')
    .option('--limit <n>', 'stop after n records')
    .option('--group <id>', 'consume in this consumer group, committing as it prints (default: a throwaway group)')
    .option(BUS_OPTION.flags, BUS_OPTION.description, BUS_OPTION.defaultValue)
    .action(async (opts: TailOptions) => {
      const { openBus } = await import('../../../topics/open-bus.ts');
      const { contractFor } = await import('../../../topics/registry.ts');
      const { toJsonLine } = await import('../../io/records-file.ts');
      const { Subject, takeUntil, take, identity } = await import('rxjs');
      const limit = opts.limit === undefined ? undefined : Number(opts.limit);
      if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new Error(`--limit must be a positive integer, got ${opts.limit}`);
      const contract = contractFor(opts.topic); // the names produce accepts, refused the same way
      const bus = await openBus(opts.bus, { readOnly: true });
      if (!(await bus.listTopics()).some((t) => t.name === opts.topic)) {
        await bus.close();
        throw new Error(`topic ${opts.topic} does not exist on ${bus.url} (dice topics list shows what does)`);
      }
      const groupId = opts.group ?? `dice-tail-${process.pid}-${Date.now().toString(36)}`;
      const stop = new Subject<void>();
      const onSignal = () => stop.next();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      let invalid = 0;
      try {
        const from = opts.fromBeginning ? { kind: 'beginning' as const } : opts.group ? { kind: 'committed' as const } : { kind: 'end' as const };
        await new Promise<void>((resolve, reject) => {
          bus
            .consume({ groupId, topics: [opts.topic], from, untilEnd: opts.untilEnd })
            .pipe(limit ? take(limit) : identity, takeUntil(stop))
            .subscribe({
              next: (r) => {
                let value: unknown;
                let error: string | null = null;
                try {
                  value = contract.decode(r.value);
                } catch (err) {
                  error = err instanceof Error ? err.message : String(err);
                  invalid++;
                }
                const where = { topic: r.topic, partition: r.partition, offset: r.offset, key: r.key, timestamp: r.timestamp };
                if (error !== null) console.error(`${r.topic}[${r.partition}]@${r.offset}: invalid record: ${error}`);
                else if (opts.json) console.log(toJsonLine({ ...where, value }));
                else {
                  const text = toJsonLine(value);
                  console.log(`${r.topic}[${r.partition}]@${r.offset} ${r.key ?? '-'} ${text.length > 300 ? `${text.slice(0, 300)}…` : text}`);
                }
                r.commit().catch(reject);
              },
              error: reject,
              complete: resolve,
            });
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await bus.close();
      }
      if (invalid > 0) process.exitCode = 1;
    });
}
