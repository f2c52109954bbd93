import type { Command } from 'commander';
import { BUS_OPTION } from '../../../topics/open-bus.ts';

interface ProduceOptions {
  bus: string;
  topic: string;
  file: string;
  format?: 'jsonl' | 'json' | 'parquet';
  failOnInvalid?: boolean;
}

const BATCH = 256;

export function register(program: Command): void {
  program
    .command('produce')
    .description('write records from a JSONL / JSON / Parquet file to a topic, validated by the topic contract; invalid records go to dead-letter')
    .requiredOption('--topic <name>', 'topic, e.g. prompts or <namespace>.offline')
    .requiredOption('--file <path>', 'records file (.jsonl, .json, .parquet)')
    .option('--format <format>', 'jsonl | json | parquet (default: from the extension)')
    .option('--fail-on-invalid', 'exit with status 1 when any record was dead-lettered')
    .option(BUS_OPTION.flags, BUS_OPTION.description, BUS_OPTION.defaultValue)
    .action(async (opts: ProduceOptions) => {
      const { basename } = await import('node:path');
      const { openBus } = await import('../../../topics/open-bus.ts');
      const { contractFor, parseTopicName, topicName, topicContracts } = await import('../../../topics/registry.ts');
      const { readRecordEntries, toJsonLine } = await import('../../io/records-file.ts');
      const { deadLetterRecord } = await import('../../../topics/dead-letter-record.ts');
      const { promptDefaults } = await import('../../service/ingest.ts');
      if (opts.format && !['jsonl', 'json', 'parquet'].includes(opts.format)) {
        throw new Error(`--format must be jsonl, json or parquet, got ${opts.format}`);
      }
      const contract = contractFor(opts.topic);
      const parsed = parseTopicName(opts.topic)!;
      const deadLetter = topicName(parsed.namespace, 'dead-letter');
      const bus = await openBus(opts.bus);
      const source = basename(opts.file);
      let produced = 0;
      let dead = 0;
      try {
        await bus.createTopic(opts.topic, { partitions: contract.defaultPartitions });
        await bus.createTopic(deadLetter, { partitions: topicContracts['dead-letter'].defaultPartitions });
        let batch: Array<{ key: string; value: Uint8Array }> = [];
        const flush = async () => {
          if (batch.length === 0) return;
          await bus.produce(opts.topic, batch);
          produced += batch.length;
          batch = [];
        };
        for await (const entry of readRecordEntries(opts.file, opts.format)) {
          const value = parsed.base === 'prompts' ? promptDefaults(entry.value, source, entry.index, Date.now()) : entry.value;
          try {
            const record = contract.validate(value);
            batch.push({ key: contract.keyOf(record), value: contract.encode(record) });
          } catch (err) {
            const message = `${entry.location}: ${err instanceof Error ? err.message : String(err)}`;
            console.error(`dead-letter: ${message}`);
            const original = new TextEncoder().encode(toJsonLine(entry.value));
            await bus.produce(deadLetter, [
              deadLetterRecord({ topic: opts.topic, partition: -1, offset: -1, key: null, value: original }, message),
            ]);
            dead++;
          }
          if (batch.length >= BATCH) await flush();
        }
        await flush();
      } finally {
        await bus.close();
      }
      console.log(`produced ${produced} record${produced === 1 ? '' : 's'} to ${opts.topic}${dead ? `; ${dead} invalid → ${deadLetter}` : ''}`);
      if (dead > 0 && opts.failOnInvalid) process.exitCode = 1;
    });
}
