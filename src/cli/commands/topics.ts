import type { Command } from 'commander';
import { BUS_OPTION } from '../../../topics/open-bus.ts';

interface TopicsOptions {
  bus: string;
  namespace?: string;
  partitions?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const topics = program.command('topics').description('list and create topics on the bus');

  topics
    .command('list')
    .description('list topics with partition counts and record counts')
    .option(BUS_OPTION.flags, BUS_OPTION.description, BUS_OPTION.defaultValue)
    .option('--json', 'one JSON object per topic')
    .action(async (opts: TopicsOptions) => {
      const { openBus } = await import('../../../topics/open-bus.ts');
      const bus = await openBus(opts.bus, { readOnly: true });
      try {
        const list = await bus.listTopics();
        if (opts.json) {
          for (const t of list) console.log(JSON.stringify(t));
          return;
        }
        if (list.length === 0) {
          console.log(`no topics on ${bus.url} (create them: dice topics create)`);
          return;
        }
        const width = Math.max(5, ...list.map((t) => t.name.length));
        console.log(`${'topic'.padEnd(width)}  partitions  records  end offsets`);
        for (const t of list) {
          const total = t.endOffsets.reduce((s, n) => s + n, 0);
          console.log(`${t.name.padEnd(width)}  ${String(t.partitions).padStart(10)}  ${String(total).padStart(7)}  ${t.endOffsets.join(',')}`);
        }
      } finally {
        await bus.close();
      }
    });

  topics
    .command('create [names...]')
    .description('create topics; with no names, every pipeline topic of the namespace with its default partition count')
    .option(BUS_OPTION.flags, BUS_OPTION.description, BUS_OPTION.defaultValue)
    .option('--namespace <ns>', 'run namespace: topics are named <ns>.<topic>')
    .option('--partitions <n>', 'partition count (default: the topic contract\'s)')
    .action(async (names: string[], opts: TopicsOptions) => {
      const { openBus } = await import('../../../topics/open-bus.ts');
      const { topicName, topicContracts, topicBaseNames, parseTopicName } = await import('../../../topics/registry.ts');
      let partitions: number | undefined;
      if (opts.partitions !== undefined) {
        partitions = Number(opts.partitions);
        if (!Number.isInteger(partitions) || partitions < 1) throw new Error(`--partitions must be a positive integer, got ${opts.partitions}`);
      }
      const wanted =
        names.length > 0
          ? names.map((n) => (opts.namespace && !n.includes('.') ? `${opts.namespace}.${n}` : n))
          : topicBaseNames.map((b) => topicName(opts.namespace, b));
      const bus = await openBus(opts.bus);
      try {
        for (const name of wanted) {
          const base = parseTopicName(name)?.base;
          const n = partitions ?? (base ? topicContracts[base].defaultPartitions : undefined);
          if (n === undefined) throw new Error(`topic ${name} is not a pipeline topic: give --partitions`);
          await bus.createTopic(name, { partitions: n });
          console.log(`${name}  ${n} partition${n === 1 ? '' : 's'}`);
        }
      } finally {
        await bus.close();
      }
    });
}
