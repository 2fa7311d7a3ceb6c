/**
 * Extended attributes through external tools, since Node has no xattr API.
 *
 *   await findXattr('/upper', 'trusted.overlay.opaque')  // Map<absPath, Buffer>, one process
 *   await setXattrs([{ path, name, value }])             // one process for the whole batch
 *
 * `getfattr`/`setfattr` (Debian package `attr`) are used when installed, else `python3`
 * (os.getxattr/os.setxattr). With neither, these throw UNSUPPORTED naming what to install.
 * Paths and values cross the process boundary hex-encoded, so any byte survives.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CommandError, runShort } from '../util/commands.js';
import { PolyarchError, errorMessage } from '../util/errors.js';

const run = promisify(execFile);

let backend: Promise<'attr' | 'python3' | null> | undefined;

async function which(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch {
    return false;
  }
}

/** Which tool is used: `attr` (getfattr/setfattr), `python3`, or null (none installed). */
export function xattrBackend(): Promise<'attr' | 'python3' | null> {
  backend ??= (async () => {
    if (await which('getfattr', ['--version'])) return 'attr';
    if (await which('python3', ['-c', 'import os; os.getxattr'])) return 'python3';
    return null;
  })();
  return backend;
}

function unsupported(what: string): PolyarchError {
  return new PolyarchError(
    'UNSUPPORTED',
    `${what} needs extended attributes, but neither getfattr/setfattr (Debian package attr) nor python3 is installed`,
  );
}

const PY_FIND = `
import os, sys
root, name = bytes.fromhex(sys.argv[1]), sys.argv[2]
for d, dirs, files in os.walk(root):
    for n in [b''] + dirs + files:
        p = os.path.join(d, n) if n else d
        try:
            v = os.getxattr(p, name, follow_symlinks=False)
        except OSError:
            continue
        sys.stdout.write(p.hex() + ' ' + v.hex() + '\\n')
`;

/** Every path under `root` (itself included) that has xattr `name`, with its value. */
/** Adds the python helper's `HEXPATH HEXNAME HEXVALUE` lines to `out`. */
function addHexLines(out: Map<string, Map<string, Buffer>>, stdout: string): void {
  for (const line of stdout.split('\n')) {
    const [p, n, v] = line.split(' ');
    if (!p || !n || v === undefined) continue;
    const path = Buffer.from(p, 'hex').toString();
    let m = out.get(path);
    if (!m) out.set(path, (m = new Map()));
    m.set(Buffer.from(n, 'hex').toString(), Buffer.from(v, 'hex'));
  }
}

export async function findXattr(root: string, name: string): Promise<Map<string, Buffer>> {
  const b = await xattrBackend();
  const out = new Map<string, Buffer>();
  try {
    if (b === 'python3') {
      const { stdout } = await run('python3', ['-c', PY_FIND, Buffer.from(root).toString('hex'), name], {
        maxBuffer: 256 * 1024 * 1024,
      });
      for (const line of stdout.split('\n')) {
        const [p, v] = line.split(' ');
        if (p && v !== undefined) out.set(Buffer.from(p, 'hex').toString(), Buffer.from(v, 'hex'));
      }
      return out;
    }
    if (b === 'attr') {
      const escaped = `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
      let stdout = '';
      try {
        ({ stdout } = await run(
          'getfattr',
          ['-R', '-P', '--absolute-names', '-e', 'hex', '-d', '-m', escaped, root],
          {
            maxBuffer: 256 * 1024 * 1024,
          },
        ));
      } catch (err) {
        // getfattr exits 1 when some file had no readable attributes; its stdout is still valid.
        stdout = (err as { stdout?: string }).stdout ?? '';
        if (!stdout && (err as { code?: unknown }).code !== 1) throw err;
      }
      for (const [file, attrs] of parseGetfattrDump(stdout)) {
        const v = attrs.get(name);
        if (v) out.set(file, v);
      }
      return out;
    }
  } catch (err) {
    throw new PolyarchError('IO', `reading xattr ${name} under ${root}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  throw unsupported(`reading ${name} under ${root}`);
}

/** Parses `getfattr -d -e hex` output: `# file: PATH` then `name=0xHEX` lines per file. */
export function parseGetfattrDump(stdout: string): Map<string, Map<string, Buffer>> {
  const out = new Map<string, Map<string, Buffer>>();
  let attrs: Map<string, Buffer> | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      attrs = new Map();
      out.set(unescapeGetfattr(line.slice(8)), attrs);
      continue;
    }
    const eq = line.indexOf('=');
    if (!attrs || eq <= 0) continue;
    const key = unescapeGetfattr(line.slice(0, eq));
    const v = line.slice(eq + 1);
    if (v.startsWith('0x')) attrs.set(key, Buffer.from(v.slice(2), 'hex'));
    else if (v === '' || v === '""') attrs.set(key, Buffer.alloc(0));
    else if (v.startsWith('0s')) attrs.set(key, Buffer.from(v.slice(2), 'base64'));
    else if (v.startsWith('"') && v.endsWith('"'))
      attrs.set(key, Buffer.from(unescapeGetfattr(v.slice(1, -1))));
  }
  return out;
}

/** The python helpers' shared part: `emit(path)` writes each xattr as `HEXPATH HEXNAME HEXVALUE`. */
const PY_EMIT = `
import os, sys
w = sys.stdout.write
def emit(p):
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        return
    for a in names:
        try:
            v = os.getxattr(p, a, follow_symlinks=False)
        except OSError:
            continue
        w(p.hex() + ' ' + a.encode('utf-8', 'surrogateescape').hex() + ' ' + v.hex() + '\\n')
`;

const PY_ALL = `${PY_EMIT}
root = bytes.fromhex(sys.argv[1])
for d, dirs, files in os.walk(root):
    for n in [None] + dirs + files:
        emit(d if n is None else os.path.join(d, n))
`;

/** Every xattr of every file under `root` (itself included), by absolute path; one child process. */
export async function readAllXattrs(root: string): Promise<Map<string, Map<string, Buffer>>> {
  const b = await xattrBackend();
  const out = new Map<string, Map<string, Buffer>>();
  try {
    if (b === 'python3') {
      const { stdout } = await run('python3', ['-c', PY_ALL, Buffer.from(root).toString('hex')], {
        maxBuffer: 1024 * 1024 * 1024,
      });
      addHexLines(out, stdout);
      return out;
    }
    if (b === 'attr') {
      let stdout = '';
      try {
        // Through the shared shell (util/commands): one getfattr per packed layer, and a fork
        // of the shell costs far less than one of this process.
        stdout = await runShort(
          'getfattr',
          ['-R', '-P', '--absolute-names', '-e', 'hex', '-d', '-m', '-', root],
          { discardStderr: true },
        );
      } catch (err) {
        // Exit status 1: some file could not be read; what was read is still good.
        stdout = err instanceof CommandError ? err.output : '';
        if (!stdout && !(err instanceof CommandError && err.status === 1)) throw err;
      }
      return parseGetfattrDump(stdout);
    }
  } catch (err) {
    throw new PolyarchError('IO', `reading xattrs under ${root}: ${errorMessage(err)}`, { cause: err });
  }
  throw unsupported(`reading xattrs under ${root}`);
}

const PY_OF = `${PY_EMIT}
for line in sys.stdin:
    emit(bytes.fromhex(line.strip()))
`;

/** Argument bytes per getfattr call of readXattrsOf (well under the kernel's ARG_MAX). */
const ARGS_PER_CALL = 64 * 1024;

/**
 * Every xattr of each of `paths` (absolute; not followed when symlinks), by path; paths with
 * none are absent. One child process per ~64 KiB of paths; nothing is run for an empty list.
 */
export async function readXattrsOf(paths: readonly string[]): Promise<Map<string, Map<string, Buffer>>> {
  const out = new Map<string, Map<string, Buffer>>();
  if (paths.length === 0) return out;
  const b = await xattrBackend();
  try {
    if (b === 'python3') {
      const input = paths.map((p) => Buffer.from(p).toString('hex')).join('\n');
      const stdout = await new Promise<string>((resolve, reject) => {
        const child = execFile('python3', ['-c', PY_OF], { maxBuffer: 1024 * 1024 * 1024 }, (err, so) =>
          err ? reject(err) : resolve(so),
        );
        child.stdin!.end(`${input}\n`);
      });
      addHexLines(out, stdout);
      return out;
    }
    if (b === 'attr') {
      for (let i = 0; i < paths.length; ) {
        const batch: string[] = [];
        for (let bytes = 0; i < paths.length && (batch.length === 0 || bytes < ARGS_PER_CALL); i++) {
          batch.push(paths[i]!);
          bytes += paths[i]!.length + 1;
        }
        let stdout = '';
        try {
          stdout = await runShort(
            'getfattr',
            ['-P', '--absolute-names', '-e', 'hex', '-d', '-m', '-', '--', ...batch],
            {
              discardStderr: true,
            },
          );
        } catch (err) {
          // Exit status 1: some path could not be read (e.g. gone); what was read is still good.
          stdout = err instanceof CommandError ? err.output : '';
          if (!stdout && !(err instanceof CommandError && err.status === 1)) throw err;
        }
        for (const [p, m] of parseGetfattrDump(stdout)) out.set(p, m);
      }
      return out;
    }
  } catch (err) {
    throw new PolyarchError('IO', `reading xattrs of ${paths[0]}…: ${errorMessage(err)}`, { cause: err });
  }
  throw unsupported(`reading xattrs of ${paths[0]}`);
}

/** getfattr escapes unusual bytes in names as backslash + three octal digits. */
function unescapeGetfattr(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(Number.parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else bytes.push(...Buffer.from(s[i]!, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

const PY_SET = `
import os, sys
for line in sys.stdin:
    p, n, v = line.split()
    os.setxattr(bytes.fromhex(p), bytes.fromhex(n).decode(), bytes.fromhex(v), follow_symlinks=False)
`;

export interface XattrWrite {
  path: string;
  name: string;
  value: Buffer;
}

/** Sets xattrs (not following symlinks) in one child process. */
export async function setXattrs(writes: XattrWrite[]): Promise<void> {
  if (writes.length === 0) return;
  const b = await xattrBackend();
  try {
    if (b === 'python3') {
      const input = writes
        .map(
          (w) =>
            `${Buffer.from(w.path).toString('hex')} ${Buffer.from(w.name).toString('hex')} ${w.value.toString('hex')}`,
        )
        .join('\n');
      await new Promise<void>((resolve, reject) => {
        const child = execFile('python3', ['-c', PY_SET], (err) => (err ? reject(err) : resolve()));
        child.stdin!.end(`${input}\n`);
      });
      return;
    }
    if (b === 'attr') {
      for (const w of writes)
        await run('setfattr', ['-h', '-n', w.name, '-v', `0x${w.value.toString('hex')}`, w.path]);
      return;
    }
  } catch (err) {
    throw new PolyarchError(
      'IO',
      `setting xattrs (${writes[0]!.name} on ${writes[0]!.path}…): ${errorMessage(err)}`,
      {
        cause: err,
      },
    );
  }
  throw unsupported(`setting ${writes[0]!.name} on ${writes[0]!.path}`);
}
