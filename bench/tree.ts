/**
 * The benchmarks' test tree (bench/layer.ts, bench/export.ts): files of 1-64 KiB, every 20th
 * 1-8 MiB, in directories of 100, cut from a corpus of alternating random and text pages so
 * that it compresses about as much as real layers do.
 *
 *   const { files, bytes } = generateTree(dir, 1024 * 2 ** 20);
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A 4 MiB corpus of alternating random and text pages; files are slices of it. */
function corpus(): Buffer {
  const words = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor '.repeat(60);
  const page = 16 * 1024;
  const parts: Buffer[] = [];
  for (let i = 0; i < 256; i++)
    parts.push(i % 2 === 0 ? randomBytes(page) : Buffer.from(words.slice(0, page).padEnd(page, '.')));
  return Buffer.concat(parts);
}

export function generateTree(root: string, bytes: number): { files: number; bytes: number } {
  const data = corpus();
  let x = 12345;
  const rand = (n: number) => {
    x = (x * 1103515245 + 12345) >>> 0;
    return x % n;
  };
  let written = 0;
  let files = 0;
  let dirIndex = 0;
  let dir = root;
  while (written < bytes) {
    if (files % 100 === 0) {
      dir = join(root, `d${dirIndex++ % 40}`, `sub${files}`);
      mkdirSync(dir, { recursive: true });
    }
    // Every 20th file is big (1-8 MiB); the rest 1-64 KiB.
    const size = Math.min(bytes - written, files % 20 === 0 ? (1 + rand(8)) << 20 : 1024 + rand(63 * 1024));
    const parts: Buffer[] = [];
    for (let left = size; left > 0; ) {
      const n = Math.min(left, 1 << 20);
      const off = rand(data.length - n);
      parts.push(data.subarray(off, off + n));
      left -= n;
    }
    writeFileSync(join(dir, `f${files}.bin`), Buffer.concat(parts));
    written += size;
    files++;
  }
  return { files, bytes: written };
}
