/**
 * The test environment works: its registries answer with the auth they promise, the busybox
 * fixture is a valid 5-platform index everywhere, and every busybox binary runs (foreign
 * ones via binfmt_misc + QEMU). When this file fails, fix the environment before anything else.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ensureBusyboxLayout, MEDIA_TYPES, testCacheDir } from './env/busybox.js';
import { BUSYBOX_PLATFORMS, busyboxBinary, platformString, startRegistry, testEnv } from './env/index.js';

const exec = promisify(execFile);
const env = testEnv();
const basicAuth = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const ACCEPT = [MEDIA_TYPES.index, MEDIA_TYPES.manifest].join(', ');
const EXPECTED_PLATFORMS = ['linux/amd64', 'linux/arm/v7', 'linux/arm64/v8', 'linux/ppc64le', 'linux/s390x'];

interface IndexManifest {
  mediaType: string;
  manifests: {
    digest: string;
    size: number;
    platform: { os: string; architecture: string; variant?: string };
  }[];
}

function parseChallenge(header: string | null): { scheme: string; params: Record<string, string> } {
  assert.ok(header, 'WWW-Authenticate header is missing');
  const m = /^(\w+)\s*(.*)$/.exec(header)!;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!] = p[2]!;
  return { scheme: m[1]!, params };
}

async function getToken(scope: string, auth?: string): Promise<Response> {
  const url = `${env.tokenRealm}?service=${encodeURIComponent(env.tokenService)}&scope=${encodeURIComponent(scope)}`;
  return fetch(url, auth ? { headers: { authorization: auth } } : {});
}

test('anonymous registry: /v2/ answers 200 without credentials', async () => {
  const res = await fetch(`http://${env.registry}/v2/`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
});

test('basic registry: 401 with a Basic challenge, 200 with the credentials, 401 with a wrong password', async () => {
  const anon = await fetch(`http://${env.registryBasic}/v2/`);
  assert.equal(anon.status, 401);
  assert.equal(parseChallenge(anon.headers.get('www-authenticate')).scheme, 'Basic');
  const ok = await fetch(`http://${env.registryBasic}/v2/`, {
    headers: { authorization: basicAuth(env.user, env.password) },
  });
  assert.equal(ok.status, 200);
  const wrong = await fetch(`http://${env.registryBasic}/v2/`, {
    headers: { authorization: basicAuth(env.user, `${env.password}x`) },
  });
  assert.equal(wrong.status, 401);
});

test('token registry: Bearer challenge names the realm and service; the token from it opens the registry', async () => {
  const anon = await fetch(`http://${env.registryToken}/v2/library/busybox/manifests/latest`, {
    headers: { accept: ACCEPT },
  });
  assert.equal(anon.status, 401);
  const challenge = parseChallenge(anon.headers.get('www-authenticate'));
  assert.equal(challenge.scheme, 'Bearer');
  assert.equal(challenge.params.realm, env.tokenRealm);
  assert.equal(challenge.params.service, env.tokenService);
  assert.equal(challenge.params.scope, 'repository:library/busybox:pull');

  const res = await getToken('repository:library/busybox:pull,push', basicAuth(env.user, env.password));
  assert.equal(res.status, 200);
  const body = (await res.json()) as Record<string, unknown>;
  assert.equal(typeof body.token, 'string');
  assert.equal(body.access_token, body.token);
  assert.equal(body.expires_in, 300);
  assert.ok(!Number.isNaN(Date.parse(String(body.issued_at))));
  const bearer = { authorization: `Bearer ${body.token}` };
  assert.equal((await fetch(`http://${env.registryToken}/v2/`, { headers: bearer })).status, 200);
  const manifest = await fetch(`http://${env.registryToken}/v2/library/busybox/manifests/latest`, {
    headers: { ...bearer, accept: ACCEPT },
  });
  assert.equal(manifest.status, 200);
  assert.equal(manifest.headers.get('docker-content-digest'), env.busyboxDigest);
  // push scope was granted: the registry opens an upload
  const upload = await fetch(`http://${env.registryToken}/v2/library/busybox/blobs/uploads/`, {
    method: 'POST',
    headers: bearer,
  });
  assert.equal(upload.status, 202);
});

test('token server: a wrong password is refused, anonymous tokens are pull-only', async () => {
  const wrong = await getToken('repository:library/busybox:pull', basicAuth(env.user, 'not-the-password'));
  assert.equal(wrong.status, 401);

  const res = await getToken('repository:library/busybox:pull,push');
  assert.equal(res.status, 200);
  const { token } = (await res.json()) as { token: string };
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
  assert.deepEqual(claims.access, [{ type: 'repository', name: 'library/busybox', actions: ['pull'] }]);
  const bearer = { authorization: `Bearer ${token}` };
  const pull = await fetch(`http://${env.registryToken}/v2/library/busybox/manifests/latest`, {
    headers: { ...bearer, accept: ACCEPT },
  });
  assert.equal(pull.status, 200);
  const push = await fetch(`http://${env.registryToken}/v2/library/busybox/blobs/uploads/`, {
    method: 'POST',
    headers: bearer,
  });
  assert.equal(push.status, 401);
});

test('token registry: tokens are checked (scope, signer) and the wrong service is refused', async () => {
  const auth = basicAuth(env.user, env.password);
  const other = await getToken('repository:other/repo:pull', auth);
  const { token } = (await other.json()) as { token: string };
  const url = `http://${env.registryToken}/v2/library/busybox/manifests/latest`;
  const wrongScope = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: ACCEPT } });
  assert.equal(wrongScope.status, 401, 'a token for other/repo does not open library/busybox');

  // A second token registry trusts only its own token server's certificate.
  const reg = await startRegistry({ auth: 'token', user: env.user, password: env.password });
  try {
    const mine = await getToken('repository:library/busybox:pull,push', auth);
    const { token: foreign } = (await mine.json()) as { token: string };
    const res = await fetch(`${reg.url}/v2/`, { headers: { authorization: `Bearer ${foreign}` } });
    assert.equal(res.status, 401, 'a token signed by another server is refused');
    const own = await fetch(`${reg.tokenServer!.realm}?service=${reg.tokenServer!.service}&scope=`, {
      headers: { authorization: auth },
    });
    const { token: good } = (await own.json()) as { token: string };
    assert.equal(
      (await fetch(`${reg.url}/v2/`, { headers: { authorization: `Bearer ${good}` } })).status,
      200,
    );
    assert.equal(reg.tokenServer!.requests.length, 1);
    assert.equal(reg.tokenServer!.requests[0]!.user, env.user);
  } finally {
    await reg.stop();
  }

  const res = await fetch(`${env.tokenRealm}?service=not-this-one&scope=repository:library/busybox:pull`, {
    headers: { authorization: auth },
  });
  assert.equal(res.status, 400);
});

test('token server: the OAuth2 POST form (password and refresh_token grants) issues working tokens', async () => {
  const post = (form: Record<string, string>) =>
    fetch(env.tokenRealm, { method: 'POST', body: new URLSearchParams(form) });
  const scope = 'repository:library/busybox:pull';
  const first = await post({
    grant_type: 'password',
    username: env.user,
    password: env.password,
    service: env.tokenService,
    scope,
    access_type: 'offline',
    client_id: 'polyarch-test',
  });
  assert.equal(first.status, 200);
  const { access_token, refresh_token } = (await first.json()) as Record<string, string>;
  assert.ok(access_token && refresh_token);
  const again = await post({
    grant_type: 'refresh_token',
    refresh_token: refresh_token!,
    service: env.tokenService,
    scope,
  });
  assert.equal(again.status, 200);
  const { access_token: token2 } = (await again.json()) as Record<string, string>;
  const res = await fetch(`http://${env.registryToken}/v2/library/busybox/manifests/latest`, {
    headers: { authorization: `Bearer ${token2}`, accept: ACCEPT },
  });
  assert.equal(res.status, 200);
  const bad = await post({
    grant_type: 'password',
    username: env.user,
    password: 'nope',
    service: env.tokenService,
  });
  assert.equal(bad.status, 401);
});

test('busybox: the same 5-platform index in all three registries and the layout', async () => {
  const targets: [string, Record<string, string>][] = [[env.registry, {}]];
  targets.push([env.registryBasic, { authorization: basicAuth(env.user, env.password) }]);
  const tok = await getToken('repository:library/busybox:pull', basicAuth(env.user, env.password));
  targets.push([
    env.registryToken,
    { authorization: `Bearer ${((await tok.json()) as { token: string }).token}` },
  ]);
  const layoutIndex = await readFile(
    join(env.busyboxLayout, 'blobs', 'sha256', env.busyboxDigest.slice('sha256:'.length)),
  );
  for (const [host, headers] of targets) {
    const res = await fetch(`http://${host}/v2/library/busybox/manifests/latest`, {
      headers: { ...headers, accept: ACCEPT },
    });
    assert.equal(res.status, 200, host);
    assert.equal(res.headers.get('content-type'), MEDIA_TYPES.index);
    assert.equal(res.headers.get('docker-content-digest'), env.busyboxDigest);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.deepEqual(bytes, layoutIndex, `${host} serves the layout's index bytes`);
    const index = JSON.parse(bytes.toString('utf8')) as IndexManifest;
    const platforms = index.manifests.map((m) => {
      const p = m.platform;
      return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
    });
    assert.deepEqual(platforms.sort(), EXPECTED_PLATFORMS);
  }
});

test('busybox: skopeo reads the pushed index and the layout the same way', async () => {
  const { stdout: remote } = await exec('skopeo', [
    'inspect',
    '--raw',
    '--tls-verify=false',
    `docker://${env.busybox}`,
  ]);
  const { stdout: local } = await exec('skopeo', ['inspect', '--raw', `oci:${env.busyboxLayout}:busybox`]);
  assert.equal(remote, local);
  const { stdout } = await exec('skopeo', [
    'inspect',
    '--tls-verify=false',
    '--override-arch',
    'arm64',
    `docker://${env.busybox}`,
  ]);
  const info = JSON.parse(stdout) as { Architecture: string; Os: string; Variant?: string; Layers: string[] };
  assert.equal(info.Architecture, 'arm64');
  assert.equal(info.Os, 'linux');
  assert.equal(info.Layers.length, 1);
});

test('busybox: umoci accepts every platform manifest', async () => {
  // umoci 0.4 refuses a tag naming an index ("tag is ambiguous"), so give each manifest a tag
  // in a scratch layout sharing the fixture's blobs.
  const dir = await mkdtemp(join(tmpdir(), 'polyarch-env-umoci-'));
  try {
    await writeFile(join(dir, 'oci-layout'), await readFile(join(env.busyboxLayout, 'oci-layout')));
    await symlink(join(env.busyboxLayout, 'blobs'), join(dir, 'blobs'));
    const index = JSON.parse(
      await readFile(join(env.busyboxLayout, 'blobs', 'sha256', env.busyboxDigest.slice(7)), 'utf8'),
    ) as IndexManifest;
    const tagged = index.manifests.map((m, i) => ({
      mediaType: MEDIA_TYPES.manifest,
      digest: m.digest,
      size: m.size,
      annotations: { 'org.opencontainers.image.ref.name': `p${i}` },
    }));
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: tagged }));
    const { stdout: tags } = await exec('umoci', ['ls', '--layout', dir]);
    assert.deepEqual(tags.trim().split('\n').sort(), ['p0', 'p1', 'p2', 'p3', 'p4']);
    for (const t of tagged) {
      const { stdout } = await exec('umoci', [
        'stat',
        '--json',
        '--image',
        `${dir}:${t.annotations['org.opencontainers.image.ref.name']}`,
      ]);
      const stat = JSON.parse(stdout) as { history: { layer: { mediaType: string } }[] };
      assert.equal(stat.history.length, 1);
      assert.equal(stat.history[0]!.layer.mediaType, MEDIA_TYPES.layer);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('busybox: every extracted binary runs, foreign ones through binfmt_misc', async () => {
  for (const p of BUSYBOX_PLATFORMS) {
    const { stdout } = await exec(busyboxBinary(p.deb), ['uname', '-m']);
    assert.equal(stdout.trim(), p.unameM, `busybox-static:${p.deb}`);
  }
});

test('busybox: every rootfs runs `sh -c` as root in a chroot (QEMU handlers have the F flag)', async () => {
  for (const p of BUSYBOX_PLATFORMS) {
    const rootfs = env.busyboxRootfs[platformString(p)]!;
    const { stdout } = await exec('chroot', [
      rootfs,
      '/bin/sh',
      '-c',
      'echo "$(uname -m) $(id -un) $(stat -c %a /tmp) $(grep -c . /etc/passwd)"; ls /bin/ls',
    ]);
    assert.equal(stdout, `${p.unameM} root 1777 2\n/bin/ls\n`, platformString(p));
  }
});

test('busybox: the layout is byte-reproducible from the same debs', async () => {
  const cache = await mkdtemp(join(tmpdir(), 'polyarch-env-cache-'));
  try {
    await mkdir(cache, { recursive: true });
    await symlink(join(testCacheDir(), 'busybox'), join(cache, 'busybox'));
    const again = await ensureBusyboxLayout(cache);
    assert.equal(again.indexDigest, env.busyboxDigest);
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
});

test('registries.toml mirrors docker.io to the anonymous registry', async () => {
  const toml = await readFile(env.config, 'utf8');
  assert.match(toml, /^\[registry\."docker\.io"\]\n {2}mirrors = \["([^"]+)"\]$/m);
  assert.equal(/mirrors = \["([^"]+)"\]/.exec(toml)![1], env.registry);
  for (const host of [env.registry, env.registryBasic, env.registryToken]) {
    assert.ok(toml.includes(`[registry."${host}"]\n  http = true`), host);
  }
});

test('startRegistry: a registry of its own is separate and gone after stop()', async () => {
  const reg = await startRegistry({ auth: 'none' });
  try {
    assert.notEqual(reg.host, env.registry);
    const res = await fetch(`${reg.url}/v2/library/busybox/tags/list`);
    assert.equal(res.status, 404, 'a fresh registry has no busybox');
  } finally {
    await reg.stop();
  }
  await assert.rejects(fetch(`${reg.url}/v2/`));
});

test('testEnv() outside the harness fails loudly instead of skipping', async () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const cleanEnv = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('POLYARCH_TEST_')),
  );
  const script = `import(${JSON.stringify(resolve(here, 'env', 'index.js'))}).then((m) => m.testEnv())`;
  await assert.rejects(
    exec(process.execPath, ['-e', script], { env: cleanEnv }),
    (err: Error & { stderr: string }) => {
      assert.match(err.stderr, /POLYARCH_TEST_\w+ is not set: run the tests through scripts\/test\.sh/);
      return true;
    },
  );
});
