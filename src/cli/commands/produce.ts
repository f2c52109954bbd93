import type { Command } from 'commander';
import { BUS_OPTION } from '../../../topics/open-bus.ts';

interface ProduceOptions {
  bus: string;
  topic: string;
  file: string;
  format?: 'jsonl' | 'json' | 'parquet';
  strict?: boolean;
}

export function register(program: Command): void {
  program
    .command('produce')
    .description(
      'write records from a JSONL / JSON / Parquet file to a topic, validated by the topic contract: each record is produced or ' +
        'dead-lettered with its file:line and reason; on prompts and offline the first record of an id wins, and ids already on the topic are not produced again',
    )
    .requiredOption('--topic <name>', 'topic, e.g. prompts or <namespace>.offline')
    .requiredOption('--file <path>', 'records file (.jsonl, .json, .parquet)')
    .option('--format <format>', 'jsonl | json | parquet (default: from the extension)')
    .option('--strict', 'exit with status 1 when any record was dead-lettered')
    .option(BUS_OPTION.flags, BUS_OPTION.description, BUS_OPTION.defaultValue)
    .action(async (opts: ProduceOptions) => {
      const { openBus } = await import('../../../topics/open-bus.ts');
      const { contractFor, parseTopicName, topicName, topicContracts } = await import('../../../topics/registry.ts');
      const { ingestFile, ingestDefaults, firstKeyWinsOn } = await import('../../service/ingest.ts');
      if (opts.format && !['jsonl', 'json', 'parquet'].includes(opts.format)) {
        throw new Error(`--format must be jsonl, json or parquet, got ${opts.format}`);
      }
      const contract = contractFor(opts.topic);
      const parsed = parseTopicName(opts.topic)!;
      const deadLetter = topicName(parsed.namespace, 'dead-letter');
      const bus = await openBus(opts.bus);
      let result;
      try {
        await bus.createTopic(opts.topic, { partitions: contract.defaultPartitions });
        await bus.createTopic(deadLetter, { partitions: topicContracts['dead-letter'].defaultPartitions });
        result = await ingestFile(bus, opts.topic, deadLetter, contract, opts.file, ingestDefaults(parsed.base, Date.now()), {
          format: opts.format,
          keepValues: false,
          firstKeyWins: firstKeyWinsOn(parsed.base),
          onDeadLetter: (message) => console.error(`dead-letter: ${message}`),
        });
      } finally {
        await bus.close();
      }
      const { records, produced, alreadyPresent, deadLettered } = result;
      const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
      console.log(
        `${plural(records, 'record')} in ${opts.file}: produced ${produced} to ${opts.topic}` +
          (alreadyPresent ? `, ${alreadyPresent} already there` : '') +
          (deadLettered ? `, ${deadLettered} dead-lettered → ${deadLetter}` : ''),
      );
      if (deadLettered > 0 && opts.strict) process.exitCode = 1;
    });
}
