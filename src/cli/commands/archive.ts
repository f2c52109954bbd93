import type { Command } from 'commander';
import { BUS_OPTION } from '../../../topics/open-bus.ts';

interface ArchiveCliOptions {
  bus: string;
  out: string;
  namespace?: string;
  batchRecords: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('archive')
    .description('write every topic of a run to Parquet (raw value + bus position + decoded columns), one file per topic, plus manifest.json')
    .option(BUS_OPTION.flags, BUS_OPTION.description, BUS_OPTION.defaultValue)
    .requiredOption('--out <dir>', 'directory for <topic>.parquet files and manifest.json')
    .option('--namespace <ns>', 'topic namespace of the run (as given to dice run/serve); without it, the topics with no namespace')
    .option('--batch-records <n>', 'records per Parquet row group', '4096')
    .option('--json', 'print the manifest as JSON')
    .action(async (opts: ArchiveCliOptions) => {
      const { openBus } = await import('../../../topics/open-bus.ts');
      const { archiveRun } = await import('../../archive/archive.ts');
      const batchRecords = Number(opts.batchRecords);
      if (!Number.isInteger(batchRecords) || batchRecords < 1) throw new Error(`--batch-records must be a positive integer, got ${JSON.stringify(opts.batchRecords)}`);
      const bus = await openBus(opts.bus, { readOnly: true });
      try {
        const manifest = await archiveRun({
          bus,
          outDir: opts.out,
          namespace: opts.namespace,
          batchRecords,
          onProgress: ({ topic, records }) => process.stderr.write(`\r${topic}: ${records} records`),
        });
        process.stderr.write('\n');
        if (opts.json) console.log(JSON.stringify(manifest, null, 2));
        else {
          for (const t of manifest.topics) {
            console.log(`${t.file.padEnd(24)} ${String(t.records).padStart(8)} records${t.decodeErrors ? `  (${t.decodeErrors} failed decoding: see decode_error)` : ''}`);
          }
          console.log(`archived ${manifest.topics.length} topics of ${bus.url} to ${opts.out}`);
        }
      } finally {
        await bus.close();
      }
    });
}
