/**
 * Test fixtures for the layer tests (not part of the library API): `makeTree` builds a tree
 * with every kind of file a layer can hold, `manifest` describes a tree line by line so two
 * trees can be compared with deepEqual.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

const isRoot = process.getuid?.() === 0;

/** One line per file: type, mode, owner, content hash or link target, hardlink group, optionally mtime. */
export function manifest(root: string, opts: { mtime?: boolean } = {}): string[] {
  const out: string[] = [];
  const inodes = new Map<number, string>();
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      let what = '';
      if (st.isFile())
        what = `file ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)}`;
      else if (st.isDirectory()) what = 'dir';
      else if (st.isSymbolicLink()) what = `symlink -> ${readlinkSync(p)}`;
      else if (st.isFIFO()) what = 'fifo';
      else if (st.isCharacterDevice()) what = `char ${st.rdev}`;
      else if (st.isBlockDevice()) what = `block ${st.rdev}`;
      if (st.isFile() && st.nlink > 1) {
        const first = inodes.get(st.ino);
        if (first) what += ` (same inode as ${first})`;
        else inodes.set(st.ino, r);
      }
      const mode = st.isSymbolicLink() ? '' : (st.mode & 0o7777).toString(8);
      out.push(
        `${r} ${what} ${mode} ${st.uid}:${st.gid}${opts.mtime && !st.isSymbolicLink() ? ` @${Math.floor(st.mtimeMs / 1000)}` : ''}`,
      );
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(root, '');
  return out;
}

/** A tree with every kind of file a layer can hold. */
export function makeTree(root: string, opts: { mtime?: number } = {}): void {
  mkdirSync(join(root, 'etc/ssl'), { recursive: true });
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  mkdirSync(join(root, 'tmp'), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  writeFileSync(join(root, 'etc/hosts'), '127.0.0.1 localhost\n');
  writeFileSync(join(root, 'etc/ssl/big'), Buffer.alloc(300_000, 'x'));
  writeFileSync(join(root, 'usr/bin/su'), '#!/bin/sh\n');
  chmodSync(join(root, 'usr/bin/su'), 0o4755);
  linkSync(join(root, 'usr/bin/su'), join(root, 'usr/bin/su-hardlink'));
  symlinkSync('/etc/hosts', join(root, 'hosts-abs'));
  symlinkSync('../etc', join(root, 'usr/etc-rel'));
  writeFileSync(join(root, 'ünïcødé'), 'u');
  const deep = join(root, 'd'.repeat(90), 'e'.repeat(90), 'f'.repeat(90));
  mkdirSync(deep, { recursive: true });
  writeFileSync(join(deep, 'g'.repeat(120)), 'deep');
  writeFileSync(join(root, 'a-b'), 'sorting: a-b < a/ < a0');
  mkdirSync(join(root, 'a'));
  writeFileSync(join(root, 'a', 'x'), '');
  writeFileSync(join(root, 'a0'), '');
  execFileSync('mkfifo', [join(root, 'fifo')]);
  if (isRoot) {
    execFileSync('mknod', [join(root, 'null'), 'c', '1', '3']);
    execFileSync('chown', ['-h', '1234:2097153', join(root, 'etc/hosts')]);
  }
  if (opts.mtime !== undefined) {
    const t = opts.mtime;
    execFileSync('find', [root, '-exec', 'touch', '-h', '-d', `@${t}`, '{}', '+']);
  }
}
