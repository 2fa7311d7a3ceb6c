/**
 * What scripts written for docker/buildx depend on, through ./bin/polyarch as a user runs it:
 * exit codes, what goes to stdout, flags that must not be usage errors, and the image a
 * digest or an untagged archive names.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ContentStore } from '../src/content/store.js';
import { exitElf } from '../src/platform/index.js';
import { UNSUPPORTED_FLAGS } from '../src/cli/unsupported.js';
import { pushBusybox, startRegistry, testEnv } from './env/index.js';
import { storeImage, tarGz } from './run-fixtures.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const env = testEnv();
let root: string;
let work: string;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function polyarch(args: string[], opts: { input?: string; cwd?: string } = {}): Run {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    input: opts.input ?? '',
    cwd: opts.cwd ?? work,
    timeout: 120_000,
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run): Run {
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
  return r;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polyarch-scripting-'));
  work = await mkdtemp(join(tmpdir(), 'polyarch-scripting-ctx-'));
  await writeFile(
    join(work, 'Dockerfile'),
    `FROM ${env.busybox}\nRUN echo built > /built\nCMD ["cat", "/built"]\n`,
  );
});

after(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

describe('build', () => {
  test('-q prints only the image ID on stdout, and that ID runs', () => {
    const r = ok(polyarch(['build', '-q', '--platform', 'linux/amd64,linux/arm64', '-t', 'quiet:1', '.']));
    assert.match(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
    assert.equal(r.stderr, '');
    const id = r.stdout.trim();
    assert.equal(ok(polyarch(['run', '--rm', '--platform', 'linux/arm64', id])).stdout, 'built\n');
    // --progress quiet is the same thing (buildx prints the ID in quiet mode however it was chosen).
    const q = ok(polyarch(['build', '--progress', 'quiet', '-t', 'quiet:2', '.']));
    assert.match(q.stdout, /^sha256:[0-9a-f]{64}\n$/);
    assert.equal(ok(polyarch(['images', '-q', 'quiet:2'])).stdout.trim(), q.stdout.trim().slice(7, 19));
  });

  test('attestation flags: off and on both build; a bad spec is refused', () => {
    for (const flags of [
      ['--provenance=false'],
      ['--sbom=false'],
      ['--provenance=false', '--sbom=0'],
      ['--attest', 'type=provenance,disabled=true'],
      ['--provenance=true'],
      ['--provenance'],
      ['--sbom'],
      ['--sbom=true'],
      ['--provenance=mode=max'],
      ['--attest', 'type=sbom'],
    ])
      ok(polyarch(['build', '-q', ...flags, '-t', 'attest:1', '.']));
    // The same through `buildx build`, the buildx user's spelling.
    ok(polyarch(['buildx', 'build', '-q', '--sbom', '-t', 'attest:2', '.']));
    // The attestations the store keeps are not images.
    assert.doesNotMatch(ok(polyarch(['images', '-a'])).stdout, /polyarch\.referrers/);
    const bad = polyarch(['build', '--attest', 'type=nonsense', '.']);
    assert.equal(bad.status, 2);
    assert.match(
      bad.stderr,
      /^ERROR: invalid --attest "type=nonsense": unknown attestation type "nonsense" \(expected sbom or provenance\)/,
    );
  });

  test('--call check is --check; other calls are refused clearly', async () => {
    await writeFile(join(work, 'warn.Dockerfile'), 'FROM busybox\nCMD echo hi\n');
    const r = polyarch(['build', '--call', 'check', '-f', 'warn.Dockerfile', '.']);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^Check complete, 1 warning has been found!\n\nWARNING: JSONArgsRecommended/);
    const o = polyarch(['build', '--call', 'outline', '.']);
    assert.equal(o.status, 1);
    assert.match(o.stderr, /^ERROR: --call outline: only check and build are supported yet/);
  });

  test('--help says only what is true', () => {
    const help = ok(polyarch(['build', '--help'])).stdout;
    assert.match(help, /a\s+git\s+URL\s+\(#ref:subdir\)\s+or\s+an\s+https\s+URL/);
    assert.match(
      help,
      /--annotation <key=value>\s+add\s+an\s+annotation\s+to\s+the\s+image\s+\(BuildKit\s+builders;\s+the\s+local\s+engine\s+does\s+not\s+support\s+it\s+yet/,
    );
    assert.match(help, /--build-context <name=value>/);
    for (const flag of ['--cache-from', '--cache-to']) {
      assert.match(help, new RegExp(`${flag} [^\\n]*\\n?[^\\n]*type=registry,ref=R`), flag);
      assert.doesNotMatch(help, new RegExp(`${flag} [^\\n]*\\n?[^\\n]*not supported yet`), flag);
    }
    for (const flag of ['--quiet', '--provenance', '--sbom', '--attest', '--call'])
      assert.match(help, new RegExp(`${flag}\\b`), flag);
  });

  test('a buildx flag polyarch lacks is named as such, not "did you mean" another', () => {
    for (const [args, flag] of [
      [['build', '--add-host', 'a:127.0.0.1', '.'], '--add-host'],
      [['build', '--shm-size=1g', '.'], '--shm-size'],
      [['run', '--cap-add', 'NET_ADMIN', 'busybox'], '--cap-add'],
      [['run', '--mount', 'type=bind,src=.,dst=/x', 'busybox'], '--mount'],
    ] as const) {
      const r = polyarch([...args]);
      assert.equal(r.status, 2, args.join(' '));
      assert.match(
        r.stderr,
        new RegExp(
          `^ERROR: unknown option '${flag}': docker .*'s ${flag} is not supported by polyarch yet\\n`,
        ),
      );
      assert.doesNotMatch(r.stderr, /Did you mean/);
    }
    // A plain typo still gets the suggestion.
    const typo = polyarch(['build', '--plaform', 'linux/amd64', '.']);
    assert.equal(typo.status, 2);
    assert.match(typo.stderr, /Did you mean --platform\?/);
  });

  test('the table of missing flags names none that polyarch has', () => {
    for (const [command, flags] of Object.entries(UNSUPPORTED_FLAGS)) {
      const help = ok(polyarch([command, '--help'])).stdout;
      for (const f of flags)
        assert.doesNotMatch(help, new RegExp(`(^|[ ,])${f}[ ,=\\n]`, 'm'), `${command} ${f}`);
    }
  });
});

describe('run exit codes', () => {
  test('an image that lacks the platform, or one not in the store with --pull never: 125', () => {
    const r = polyarch(['run', '--rm', '--platform', 'linux/riscv64', env.busybox, 'true']);
    assert.equal(r.status, 125);
    assert.match(r.stderr, /^ERROR: image \S+ has no linux\/riscv64 variant/);
    const n = polyarch(['run', '--rm', '--pull', 'never', 'localhost/absent:1', 'true']);
    assert.equal(n.status, 125);
  });

  test('a Windows variant is refused before anything starts; the index still inspects and pulls', async () => {
    const store = await ContentStore.open(join(root, 'store'));
    const linux = await tarGz({ prog: { data: exitElf('amd64', 3), mode: 0o755 } });
    const win = await tarGz({ 'Windows/cmd.exe': 'not a linux program' });
    await storeImage(store, 'localhost/mixed/win:1', [
      { platform: 'linux/amd64', layers: [linux], config: { Entrypoint: ['/prog'] } },
      { platform: 'windows/amd64', layers: [win], config: { Cmd: ['cmd'] } },
    ]);
    const w = polyarch(['run', '--rm', '--platform', 'windows/amd64', 'localhost/mixed/win:1']);
    assert.equal(w.status, 125);
    assert.equal(w.stderr, 'ERROR: image operating system "windows" cannot be used on this platform\n');
    // With no --platform the Linux variant of this host is chosen.
    assert.equal(polyarch(['run', '--rm', 'localhost/mixed/win:1']).status, 3);
    // Pushed, the mixed index inspects with both platforms and pulls per platform.
    const ref = `${env.registry}/scripting/mixed:${process.pid}`;
    ok(polyarch(['push', 'localhost/mixed/win:1', ref]));
    const inspect = ok(polyarch(['imagetools', 'inspect', ref])).stdout;
    assert.match(inspect, /Platform: {2,}linux\/amd64\n/);
    assert.match(inspect, /Platform: {2,}windows\/amd64\n/);
    const pulled = ok(polyarch(['pull', '--platform', 'windows/amd64', ref]));
    assert.match(pulled.stderr + pulled.stdout, /windows\/amd64|Digest|pulled|sha256/i);
  });
});

describe('container formats', () => {
  test("ps --format and inspect --format take Go templates with docker's fields", () => {
    const name = `fmt-${process.pid}`;
    // A foreground run without --rm is kept, as docker keeps it.
    const run = polyarch(['run', '--name', name, '--network', 'none', env.busybox, 'sh', '-c', 'exit 3']);
    assert.equal(run.status, 3, run.stderr);
    const ps = ok(polyarch(['ps', '-a', '--format', '{{.Names}} {{.State}} {{.Image}}']));
    assert.match(ps.stdout, new RegExp(`^${name} exited ${env.busybox.replace(/[.]/g, '\\.')}$`, 'm'));
    const table = ok(polyarch(['ps', '-a', '--format', 'table {{.Names}}\t{{.Status}}']));
    assert.match(table.stdout, /^NAMES\s+STATUS\n/);
    const inspect = ok(polyarch(['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}} {{.Name}}', name]));
    assert.equal(inspect.stdout, `exited 3 /${name}\n`);
    const bad = polyarch(['ps', '-a', '--format', '{{.Nope}}']);
    assert.equal(bad.status, 1);
    assert.match(
      bad.stderr,
      /^ERROR: template parsing error: template: :1:\d+: executing "" at <\.Nope>: can't evaluate field Nope/,
    );
    ok(polyarch(['rm', name]));
  });
});

describe('image names', () => {
  test('load of an OCI archive with no name keeps an untagged image, reachable by its ID', async () => {
    const dest = join(work, 'untagged.tar');
    const id = ok(
      // A label of its own: the same build as another test's would be the same (tagged) image.
      polyarch([
        'build',
        '-q',
        '--label',
        'untagged=1',
        '--platform',
        'linux/amd64,linux/arm64',
        '-o',
        `type=oci,dest=${dest}`,
        '.',
      ]),
    ).stdout.trim();
    const index = JSON.parse(spawnSync('tar', ['-xOf', dest, 'index.json'], { encoding: 'utf8' }).stdout);
    assert.equal(index.manifests[0].annotations?.['org.opencontainers.image.ref.name'], undefined);
    const loaded = ok(polyarch(['load', '-i', dest]));
    assert.equal(loaded.stdout, `Loaded image ID: ${id}\n`);
    const short = id.slice(7, 19);
    assert.doesNotMatch(ok(polyarch(['images'])).stdout, new RegExp(short));
    assert.match(
      ok(polyarch(['images', '-a'])).stdout,
      new RegExp(`^<none>\\s+<none>\\s+linux/arm64\\s+${short}`, 'm'),
    );
    assert.equal(
      ok(polyarch(['run', '--rm', '--pull', 'never', '--platform', 'linux/arm64', short])).stdout,
      'built\n',
    );
    // Its blobs are referenced: du does not count them as prunable, prune keeps them.
    const du = JSON.parse(await readFile(join(root, 'store', 'index.json'), 'utf8'));
    assert.ok(du.manifests.some((m: { digest: string }) => m.digest === id));
    ok(polyarch(['prune', '-f']));
    assert.equal(ok(polyarch(['run', '--rm', '--pull', 'never', short])).stdout, 'built\n');
    // Tagging it gives it a name (the <none> row goes); rmi by ID of an untagged image removes it.
    ok(polyarch(['tag', short, 'named:1']));
    assert.doesNotMatch(ok(polyarch(['images', '-a'])).stdout, /^<none>/m);
    ok(polyarch(['rmi', 'named:1']));
    ok(polyarch(['load', '-i', dest]));
    ok(polyarch(['rmi', short]));
    assert.doesNotMatch(ok(polyarch(['images', '-a'])).stdout, new RegExp(short));
  });

  test('run NAME:TAG@DIGEST names that digest: no tag is created or moved', async () => {
    const reg = await startRegistry();
    try {
      const tagged = `${reg.host}/digest/busybox:1`;
      await pushBusybox(env.busyboxLayout, tagged);
      const digest = env.busyboxDigest;
      // The tag in the local store points somewhere else; a digest reference must not move it.
      const store = await ContentStore.open(join(root, 'store'));
      const other = await tarGz({ prog: { data: exitElf('amd64', 5), mode: 0o755 } });
      await storeImage(store, tagged, [
        { platform: 'linux/amd64', layers: [other], config: { Entrypoint: ['/prog'] } },
      ]);
      const before = (await store.resolve(tagged))!.digest;
      assert.equal(
        ok(polyarch(['run', '--rm', `${tagged}@${digest}`, 'echo', 'by digest'])).stdout,
        'by digest\n',
      );
      assert.equal((await store.resolve(tagged))!.digest, before, 'the tag still names what it named');
      assert.equal(polyarch(['run', '--rm', '--pull', 'never', tagged]).status, 5);
      const rows = ok(polyarch(['images', '--digests', `${reg.host}/digest/busybox`])).stdout;
      assert.match(
        rows,
        new RegExp(`^${reg.host}/digest/busybox\\s+<none>\\s+${digest}\\s+linux/amd64`, 'm'),
      );
      assert.match(rows, new RegExp(`^${reg.host}/digest/busybox\\s+1\\s+sha256:`, 'm'));
      assert.doesNotMatch(rows, /\blatest\b/);
      // Again, now from the store: the same digest, still no new tag.
      ok(polyarch(['run', '--rm', '--pull', 'never', `${reg.host}/digest/busybox@${digest}`, 'true']));
    } finally {
      await reg.stop();
    }
  });
});
