/**
 * Worker thread body for the parallel gzip in compress.ts: deflates one block per message
 * with the previous block's tail as preset dictionary, ending non-final blocks with a sync
 * flush so that all blocks concatenate into one deflate stream (what pigz does).
 */
import { parentPort } from 'node:worker_threads';
import { constants, deflateRawSync } from 'node:zlib';

export interface DeflateJob {
  id: number;
  data: Uint8Array;
  dictionary?: Uint8Array;
  last: boolean;
  level: number;
}

export function deflateBlock(job: Omit<DeflateJob, 'id'>): Buffer {
  return deflateRawSync(job.data, {
    level: job.level,
    ...(job.dictionary ? { dictionary: job.dictionary } : {}),
    finishFlush: job.last ? constants.Z_FINISH : constants.Z_SYNC_FLUSH,
  });
}

parentPort?.on('message', (job: DeflateJob) => {
  try {
    const out = deflateBlock(job);
    const owns = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength;
    parentPort!.postMessage({ id: job.id, out }, owns ? [out.buffer as ArrayBuffer] : []);
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: String(err) });
  }
});
