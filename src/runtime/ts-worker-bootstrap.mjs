// Entry of every worker thread: installs tsx's loader in this thread, then imports the TypeScript module.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';
register();
await import(workerData.__entry);
