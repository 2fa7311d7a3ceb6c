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
    const owns = (b: Uint8Array) => b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;
    if (owns(job.data) && out.length <= job.data.byteLength) {
      // The deflated bytes go back in the input block's memory (it is spent): the main thread
      // then receives no new buffer per block, only memory it already owns.
      job.data.set(out);
      parentPort!.postMessage({ id: job.id, outLength: out.length, data: job.data }, [
        job.data.buffer as ArrayBuffer,
      ]);
      return;
    }
    // The input block goes back too, for reuse: the worker keeps no garbage between jobs.
    const transfer = [out, job.data].filter(owns).map((b) => b.buffer as ArrayBuffer);
    parentPort!.postMessage({ id: job.id, out, data: job.data }, transfer);
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: String(err) });
  }
});
