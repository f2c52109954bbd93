import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { Compression, Table as WasmTable, transformParquetStream, WriterPropertiesBuilder, type RecordBatch as WasmRecordBatch } from 'parquet-wasm';

/**
 * Streams Arrow IPC batches into one Parquet file (parquet-wasm, snappy — what every reader decodes, hyparquet included — row groups of at most
 * `maxRowGroupRows`), so a topic larger than memory can be archived. Writes to `path.partial` and renames at
 * the end: a file at `path` is always complete.
 */
export async function writeParquetFile(
  path: string,
  batches: AsyncIterable<Uint8Array>,
  options: { createdBy: string; maxRowGroupRows: number },
): Promise<void> {
  const iterator = batches[Symbol.asyncIterator]();
  const source = new ReadableStream<WasmRecordBatch>({
    async pull(controller) {
      const next = await iterator.next();
      if (next.done) {
        controller.close();
        return;
      }
      const table = WasmTable.fromIPCStream(next.value);
      for (const batch of table.recordBatches()) controller.enqueue(batch);
    },
    async cancel() {
      await iterator.return?.();
    },
  });
  const props = new WriterPropertiesBuilder()
    .setCompression(Compression.SNAPPY)
    .setCreatedBy(options.createdBy)
    .setMaxRowGroupSize(options.maxRowGroupRows)
    .build();
  const partial = `${path}.partial`;
  try {
    const parquet = await transformParquetStream(source, props);
    await parquet.pipeTo(Writable.toWeb(createWriteStream(partial)) as WritableStream<Uint8Array>);
    await rename(partial, path);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}
