/**
 * Runs a command inside the test environment:
 *
 *   node dist/test/env/harness.js -- node --test dist/test/env.test.js
 *
 * Starts three registries (anonymous, htpasswd, token auth with its token server), pushes
 * the busybox fixture to each as library/busybox:latest, writes a registries.toml that
 * mirrors docker.io to the anonymous one, runs the command with the POLYARCH_TEST_* variables
 * below, then stops everything (also on SIGINT/SIGTERM and on failure) and exits with the
 * command's exit code (128+N if it died of signal N).
 *
 *   POLYARCH_TEST_REGISTRY          127.0.0.1:P1   anonymous push/pull
 *   POLYARCH_TEST_REGISTRY_BASIC    127.0.0.1:P2   htpasswd basic auth
 *   POLYARCH_TEST_REGISTRY_TOKEN    127.0.0.1:P3   Bearer token auth
 *   POLYARCH_TEST_REGISTRY_USER / _PASSWORD        credentials for P2 and P3 (random per run)
 *   POLYARCH_TEST_TOKEN_REALM       http://127.0.0.1:P4/token (P3's token server)
 *   POLYARCH_TEST_TOKEN_SERVICE     the service name P3 announces
 *   POLYARCH_TEST_BUSYBOX           127.0.0.1:P1/library/busybox:latest (also on P2, P3)
 *   POLYARCH_TEST_BUSYBOX_DIGEST    digest of busybox's image index (same in every registry)
 *   POLYARCH_TEST_BUSYBOX_LAYOUT    OCI layout dir (tag 'busybox'); read-only, shared cache
 *   POLYARCH_TEST_BUSYBOX_ROOTFS_{AMD64,ARM64,ARM_V7,PPC64LE,S390X}  unpacked rootfs dirs
 *   POLYARCH_TEST_CONFIG            registries.toml (buildkitd.toml form)
 *
 * Tests read these through testEnv() in ./index.ts.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBusyboxLayout, pushBusybox } from './busybox.js';
import { type Registry, startRegistry } from './registry.js';

const BUSYBOX_REPO = 'library/busybox:latest';

async function main(argv: string[]): Promise<number> {
  const command = argv[0] === '--' ? argv.slice(1) : argv;
  if (command.length === 0) {
    process.stderr.write('usage: node dist/test/env/harness.js -- COMMAND [ARG...]\n');
    return 2;
  }
  const started = Date.now();
  const registries: Registry[] = [];
  let dir: string | undefined;
  let stopping = false;
  let child: ReturnType<typeof spawn> | undefined;
  const cleanup = async () => {
    await Promise.allSettled(registries.map((r) => r.stop()));
    if (dir) await rm(dir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (child) {
      child.kill(signal); // the child's exit then ends main() normally
      return;
    }
    if (stopping) return;
    stopping = true;
    void cleanup().finally(() => process.exit(128 + signalNumber(signal)));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  // A closed pipe (`test.sh | head`) must not crash the harness before it cleans up.
  process.stderr.on('error', () => {});
  process.stdout.on('error', () => {});

  try {
    dir = await mkdtemp(join(tmpdir(), 'polyarch-test-env-'));
    const user = 'polyarch';
    const password = randomBytes(12).toString('hex');
    const [bb, anon, basic, token] = await Promise.all([
      ensureBusyboxLayout(),
      startRegistry({ auth: 'none', parentDir: dir }).then(track),
      startRegistry({ auth: 'htpasswd', user, password, parentDir: dir }).then(track),
      startRegistry({ auth: 'token', user, password, parentDir: dir }).then(track),
    ]);
    function track(r: Registry): Registry {
      registries.push(r);
      return r;
    }
    await Promise.all([
      pushBusybox(bb.layoutDir, `${anon.host}/${BUSYBOX_REPO}`),
      pushBusybox(bb.layoutDir, `${basic.host}/${BUSYBOX_REPO}`, { user, password }),
      pushBusybox(bb.layoutDir, `${token.host}/${BUSYBOX_REPO}`, { user, password }),
    ]);
    const config = join(dir, 'registries.toml');
    await writeFile(config, registriesToml(anon.host, [anon.host, basic.host, token.host]));

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      POLYARCH_TEST_REGISTRY: anon.host,
      POLYARCH_TEST_REGISTRY_BASIC: basic.host,
      POLYARCH_TEST_REGISTRY_TOKEN: token.host,
      POLYARCH_TEST_REGISTRY_USER: user,
      POLYARCH_TEST_REGISTRY_PASSWORD: password,
      POLYARCH_TEST_TOKEN_REALM: token.tokenServer!.realm,
      POLYARCH_TEST_TOKEN_SERVICE: token.tokenServer!.service,
      POLYARCH_TEST_BUSYBOX: `${anon.host}/${BUSYBOX_REPO}`,
      POLYARCH_TEST_BUSYBOX_DIGEST: bb.indexDigest,
      POLYARCH_TEST_BUSYBOX_LAYOUT: bb.layoutDir,
      POLYARCH_TEST_CONFIG: config,
    };
    for (const img of bb.images)
      env[`POLYARCH_TEST_BUSYBOX_ROOTFS_${img.platform.envSuffix}`] = img.rootfsDir;
    process.stderr.write(
      `test env ready in ${((Date.now() - started) / 1000).toFixed(1)}s: registries ${anon.host} (anonymous), ` +
        `${basic.host} (basic), ${token.host} (token); busybox ${bb.indexDigest.slice(0, 19)}\n`,
    );
    if (stopping) return 130;

    const [cmd, ...args] = command as [string, ...string[]];
    const proc = spawn(cmd, args, { stdio: 'inherit', env });
    child = proc;
    return await new Promise<number>((resolve) => {
      proc.on('error', (err) => {
        process.stderr.write(`harness: ${cmd}: ${err.message}\n`);
        resolve(127);
      });
      proc.on('exit', (code, signal) => {
        resolve(code ?? 128 + signalNumber(signal));
      });
    });
  } catch (err) {
    process.stderr.write(`harness: setting up the test environment failed: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await cleanup();
  }
}

/** buildkitd.toml-style registry config: docker.io mirrored to `mirror`, all hosts plain HTTP. */
function registriesToml(mirror: string, httpHosts: string[]): string {
  const lines = ['[registry."docker.io"]', `  mirrors = [${JSON.stringify(mirror)}]`, ''];
  for (const h of httpHosts)
    lines.push(`[registry.${JSON.stringify(h)}]`, '  http = true', '  insecure = true', '');
  return lines.join('\n');
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return (signal && osConstants.signals[signal]) || 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
