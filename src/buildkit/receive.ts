/**
 * The receiving side of fsutil's DiffCopy (tonistiigi/fsutil receive.go), for the `local`
 * exporter: buildkitd sends a STAT per entry (fsutil's order) and an empty STAT; polyarch
 * asks for every regular file (REQ with the entry's index), writes the DATA chunks, then
 * sends FIN and waits for the daemon's.
 *
 *   await receiveTree(call, dir);   // dir must be an empty directory polyarch made
 *
 * Paths are checked: relative, no `..`, and every parent must be a directory received
 * earlier in this transfer, so a symlink sent first can never redirect a later write.
 */
import { chmod, link, lutimes, mkdir, open, symlink, utimes } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { PolyarchError } from '../util/errors.js';
import { GO_MODE } from './filesync.js';
import type { ServerCall } from './grpc.js';
import { PACKET, Packet } from './messages.js';
import type { Message } from './proto.js';

/** Go FileMode → permission bits for chmod. */
function permBits(mode: number): number {
  let m = mode & 0o777;
  if (mode & GO_MODE.setuid) m |= 0o4000;
  if (mode & GO_MODE.setgid) m |= 0o2000;
  if (mode & GO_MODE.sticky) m |= 0o1000;
  return m;
}

function bad(path: string, why: string): PolyarchError {
  return new PolyarchError('INVALID_ARGUMENT', `local output: the daemon sent "${path}": ${why}`);
}

interface Pending {
  fh: FileHandle;
  abs: string;
  stat: Message;
}

export async function receiveTree(call: ServerCall, dir: string): Promise<void> {
  const dirs = new Set<string>(['']);
  const pending = new Map<number, Pending>();
  const finished: Array<{ abs: string; stat: Message }> = [];
  const files: string[] = [];
  let id = 0;
  let statsDone = false;
  let requested = 0;
  let completed = 0;
  const dirTimes: Array<{ abs: string; stat: Message }> = [];
  try {
    for (;;) {
      if (statsDone && completed === requested) {
        await call.write(Packet, { type: PACKET.FIN });
        // The sender answers FIN (or just ends).
        for (;;) {
          const p = await call.read(Packet);
          if (!p || p.type === PACKET.FIN) break;
        }
        break;
      }
      const p = await call.read(Packet);
      if (!p) throw new PolyarchError('IO', 'local output: the daemon ended the transfer early');
      if (p.type === PACKET.ERR)
        throw new PolyarchError(
          'IO',
          `local output: the daemon reported: ${Buffer.from(p.data).toString('utf8')}`,
        );
      if (p.type === PACKET.STAT) {
        if (!p.stat) {
          statsDone = true;
          continue;
        }
        const st = p.stat as Message;
        const rel = String(st.path);
        const parts = rel.split('/');
        if (rel === '' || rel.startsWith('/') || parts.some((x) => x === '..' || x === '.' || x === ''))
          throw bad(rel, 'not a clean relative path');
        const parent = parts.slice(0, -1).join('/');
        if (!dirs.has(parent)) throw bad(rel, 'its parent is not a directory of this transfer');
        const abs = join(dir, ...parts);
        const mode = st.mode as number;
        const myId = id++;
        if (mode & GO_MODE.dir) {
          await mkdir(abs, { mode: 0o700 });
          dirs.add(rel);
          dirTimes.push({ abs, stat: st });
        } else if (mode & GO_MODE.symlink) {
          await symlink(String(st.linkname), abs);
          const t = Number(st.modTime) / 1e9;
          await lutimes(abs, t, t).catch(() => {});
        } else if (st.linkname) {
          const target = String(st.linkname);
          if (!files.includes(target))
            throw bad(rel, `hard link to "${target}", not a file of this transfer`);
          await link(join(dir, ...target.split('/')), abs);
        } else if ((mode & (GO_MODE.device | GO_MODE.pipe | GO_MODE.socket)) !== 0) {
          // Devices, pipes and sockets are not written to the client (as buildx: skipped).
        } else {
          const fh = await open(abs, 'wx', 0o600);
          files.push(rel);
          pending.set(myId, { fh, abs, stat: st });
          requested++;
          await call.write(Packet, { type: PACKET.REQ, id: myId });
        }
        continue;
      }
      if (p.type === PACKET.DATA) {
        const f = pending.get(p.id as number);
        if (!f)
          throw new PolyarchError('IO', `local output: data for entry ${p.id}, which was not asked for`);
        const data = p.data as Buffer;
        if (data.length > 0) {
          await f.fh.write(data);
          continue;
        }
        await f.fh.close();
        pending.delete(p.id as number);
        finished.push(f);
        completed++;
      }
    }
    for (const f of finished) {
      await chmod(f.abs, permBits(f.stat.mode as number));
      const t = Number(f.stat.modTime) / 1e9;
      await utimes(f.abs, t, t);
    }
    // Deepest first, so setting a directory's times is not undone by writing inside it.
    for (const d of dirTimes.reverse()) {
      await chmod(d.abs, permBits(d.stat.mode as number));
      const t = Number(d.stat.modTime) / 1e9;
      await utimes(d.abs, t, t);
    }
  } finally {
    for (const f of pending.values()) await f.fh.close().catch(() => {});
  }
}
