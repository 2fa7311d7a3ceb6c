import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ContentStore } from '../content/index.js';
import { type TarEntryInput, writeTar } from '../layer/index.js';
import { type Descriptor, type Digest, MediaType } from '../oci/index.js';
import { parsePlatform } from '../platform/index.js';
import { addLocalReferrers, localReferrers, writeArtifact } from './attach.js';
import { attestFrontendAttrs, parseAttestFlags, withDefaultAttestations } from './options.js';
import { type BuildInfo, provenanceStatement } from './provenance.js';
import { imageSubjects, spdxDocument } from './sbom.js';
import { parseDebianCopyright, scanLayers, spdxExpression } from './scan.js';

const dir = mkdtempSync(join(tmpdir(), 'polyarch-attest-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('--attest/--sbom/--provenance parse as buildx spells them', () => {
  assert.deepEqual(parseAttestFlags({}), {});
  assert.deepEqual(parseAttestFlags({ sbom: 'true', provenance: 'mode=max' }), {
    sbom: { params: {} },
    provenance: { mode: 'max', params: { mode: 'max' } },
  });
  assert.deepEqual(parseAttestFlags({ provenance: 'false', sbom: '0' }), { sbom: null, provenance: null });
  assert.deepEqual(parseAttestFlags({ attest: ['type=sbom,generator=docker/buildkit-syft-scanner'] }).sbom, {
    generator: 'docker/buildkit-syft-scanner',
    params: { generator: 'docker/buildkit-syft-scanner' },
  });
  // --provenance comes after --attest, as buildx appends it: the later one wins.
  assert.equal(
    parseAttestFlags({ attest: ['type=provenance,mode=max'], provenance: 'false' }).provenance,
    null,
  );
  assert.equal(parseAttestFlags({ attest: ['type=provenance,disabled=true'] }).provenance, null);
  assert.equal(parseAttestFlags({ attest: ['type=provenance'] }).provenance?.mode, 'min');
  for (const [flags, want] of [
    [{ attest: ['type=unknown'] }, /invalid --attest "type=unknown": unknown attestation type "unknown"/],
    [{ attest: ['mode=max'] }, /type is required/],
    [{ attest: ['type=provenance,mode=full'] }, /mode must be min or max, not "full"/],
    [{ attest: ['type=sbom,colour=red'] }, /unknown sbom option "colour"/],
    [{ attest: ['type=provenance,version=v0.2'] }, /only SLSA provenance version v1/],
    [{ provenance: 'max' }, /invalid --provenance "type=provenance,max": expected key=value pairs/],
    [{ attest: ['type=sbom,disabled=maybe'] }, /disabled must be true or false/],
  ] as const)
    assert.throws(
      () => parseAttestFlags(flags as { attest?: string[]; provenance?: string }),
      (e: Error & { exitCode?: number }) => want.test(e.message) && e.exitCode === 2,
    );
});

test('default attestations: min provenance for image outputs, as buildx', () => {
  assert.deepEqual(withDefaultAttestations({}, { imageOutput: true, env: {} }), {
    provenance: { mode: 'min', params: { mode: 'min' } },
  });
  assert.deepEqual(withDefaultAttestations({}, { imageOutput: false, env: {} }), {});
  assert.deepEqual(withDefaultAttestations({ provenance: null }, { imageOutput: true, env: {} }), {});
  assert.deepEqual(
    withDefaultAttestations({}, { imageOutput: true, env: { BUILDX_NO_DEFAULT_ATTESTATIONS: '1' } }),
    {},
  );
  assert.deepEqual(
    attestFrontendAttrs({ sbom: { params: {} }, provenance: { mode: 'max', params: { mode: 'max' } } }),
    { 'attest:sbom': '', 'attest:provenance': 'mode=max' },
  );
});

test('licence strings become SPDX expressions', () => {
  assert.equal(spdxExpression('GPL-2+'), 'GPL-2.0-or-later');
  assert.equal(spdxExpression('GPL-2+ or Artistic-2.0'), 'GPL-2.0-or-later OR Artistic-2.0');
  assert.equal(
    spdxExpression('MIT AND (Apache-2.0 OR BSD-3-Clause)'),
    'MIT AND (Apache-2.0 OR BSD-3-Clause)',
  );
  assert.equal(spdxExpression('public domain'), 'LicenseRef-public-domain');
  assert.equal(spdxExpression('Expat, BSD-3-clause'), 'MIT AND BSD-3-Clause');
  assert.equal(
    parseDebianCopyright(
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: curl\n\nFiles: lib/x\nLicense: BSD-3-clause\n text\n',
    ),
    'curl AND BSD-3-Clause',
  );
  assert.equal(parseDebianCopyright('This package was debianized by …\nLicense: GPL'), undefined);
});

function file(path: string, text: string): TarEntryInput {
  const body = Buffer.from(text);
  return { header: { path, type: 'file', size: body.length, mode: 0o644 }, body };
}

async function layer(store: ContentStore, entries: TarEntryInput[]): Promise<Descriptor> {
  const parts: Buffer[] = [];
  for await (const c of writeTar(entries)) parts.push(c);
  const blob = gzipSync(Buffer.concat(parts));
  const { digest, size } = await store.writeBlob(blob);
  return { mediaType: MediaType.OciLayerGzip, digest, size };
}

const dpkg = (pkgs: Array<[string, string, string?]>) =>
  pkgs
    .map(
      ([name, version, status]) =>
        `Package: ${name}\nStatus: ${status ?? 'install ok installed'}\nArchitecture: amd64\nVersion: ${version}\nDescription: x\n more text\n`,
    )
    .join('\n');

test('scanLayers: package databases across layers, whiteouts and opaque directories', async () => {
  const store = await ContentStore.open(join(dir, 'store'));
  const base = await layer(store, [
    file('etc/os-release', 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'),
    file(
      'var/lib/dpkg/status',
      dpkg([
        ['libc6', '2.36-9'],
        ['gone', '1.0', 'deinstall ok config-files'],
      ]),
    ),
    file(
      'usr/share/doc/libc6/copyright',
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: LGPL-2.1+\n',
    ),
    file(
      'usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA',
      'Name: six\nVersion: 1.16.0\nLicense: MIT\n\nlong text\n',
    ),
    file(
      'app/node_modules/left-pad/package.json',
      JSON.stringify({ name: 'left-pad', version: '1.3.0', license: 'WTFPL' }),
    ),
    file(
      'app/node_modules/@scope/util/package.json',
      JSON.stringify({ name: '@scope/util', version: '2.0.0' }),
    ),
    file('app/node_modules/left-pad/node_modules/x/README', 'not a package.json'),
    file('old/node_modules/dropped/package.json', JSON.stringify({ name: 'dropped', version: '9' })),
  ]);
  const top = await layer(store, [
    // dpkg rewrote its status: curl added.
    file(
      'var/lib/dpkg/status',
      dpkg([
        ['libc6', '2.36-9'],
        ['curl', '7.88.1-10+deb12u8'],
      ]),
    ),
    file('usr/lib/python3/dist-packages/.wh.six-1.16.0.dist-info', ''),
    { header: { path: 'old/', type: 'dir', mode: 0o755 } },
    file('old/.wh..wh..opq', ''),
    file(
      'lib/apk/db/installed',
      'P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r15\nL:GPL-2.0-only\n',
    ),
  ]);
  const r = await scanLayers(store, [base, top]);
  assert.deepEqual(r.distro, { id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' });
  assert.deepEqual(
    r.packages.map((p) => [p.type, p.name, p.version, p.license ?? '-']),
    [
      ['apk', 'busybox', '1.36.1-r15', 'GPL-2.0-only'],
      ['apk', 'musl', '1.2.4-r2', 'MIT'],
      ['deb', 'curl', '7.88.1-10+deb12u8', '-'],
      ['deb', 'libc6', '2.36-9', 'LGPL-2.1-or-later'],
      ['npm', '@scope/util', '2.0.0', '-'],
      ['npm', 'left-pad', '1.3.0', 'WTFPL'],
    ],
  );
  const doc = spdxDocument(r, {
    names: ['docker.io/library/app:1'],
    platform: parsePlatform('linux/amd64'),
    manifestDigest: `sha256:${'a'.repeat(64)}` as Digest,
    created: '2026-01-01T00:00:00Z',
  });
  assert.equal(doc.spdxVersion, 'SPDX-2.3');
  const curl = doc.packages.find((p) => p.name === 'curl')!;
  assert.equal(curl.versionInfo, '7.88.1-10+deb12u8');
  assert.equal(
    curl.externalRefs?.[0]?.referenceLocator,
    'pkg:deb/debian/curl@7.88.1-10%2Bdeb12u8?arch=amd64&distro=debian-12',
  );
  assert.ok(doc.packages.every((p) => /^SPDXRef-[A-Za-z0-9.-]+$/.test(p.SPDXID)));
  assert.equal(doc.relationships.filter((x) => x.relationshipType === 'CONTAINS').length, 6);
});

test('provenance: inputs by digest, no secret values, steps only in max mode', () => {
  const amd64 = parsePlatform('linux/amd64');
  const info: BuildInfo = {
    dockerfile: { name: 'Dockerfile', text: 'FROM busybox\n' },
    context: { kind: 'git', url: 'https://example.com/r.git#main', commit: 'c'.repeat(40) },
    buildArgs: { VERSION: '1', API_TOKEN: 'hunter2', DB_PASSWORD: 'pw' },
    secretIds: ['npmrc'],
    sshIds: [],
    bases: [
      {
        ref: 'busybox',
        name: 'docker.io/library/busybox:latest',
        platform: amd64,
        target: 'linux/amd64',
        rootDigest: `sha256:${'1'.repeat(64)}` as Digest,
        manifestDigest: `sha256:${'2'.repeat(64)}` as Digest,
      },
    ],
    steps: [{ target: 'linux/amd64', platform: amd64, stage: 'stage-0', instruction: 'FROM busybox' }],
    startedOn: new Date('2026-01-01T00:00:00Z'),
    finishedOn: new Date('2026-01-01T00:01:00Z'),
    builderPlatform: amd64,
  };
  const subjects = imageSubjects(['docker.io/library/app:1'], amd64, `sha256:${'a'.repeat(64)}` as Digest);
  const min = provenanceStatement(info, { platform: amd64, subjects, mode: 'min' });
  const text = JSON.stringify(min);
  assert.equal(min.predicateType, 'https://slsa.dev/provenance/v1');
  assert.equal(min._type, 'https://in-toto.io/Statement/v1');
  assert.deepEqual(min.subject, [
    { name: 'pkg:docker/docker.io/library/app@1?platform=linux%2Famd64', digest: { sha256: 'a'.repeat(64) } },
  ]);
  assert.ok(!text.includes('hunter2') && !text.includes('API_TOKEN') && !text.includes('"pw"'), text);
  assert.ok(text.includes('"build-arg:VERSION":"1"'));
  assert.ok(text.includes(`"sha256":"${'2'.repeat(64)}"`), 'base image by manifest digest');
  assert.ok(text.includes(`"sha1":"${'c'.repeat(40)}"`), 'git commit');
  assert.ok(!text.includes('buildConfig') && !text.includes('npmrc'));
  const max = JSON.stringify(provenanceStatement(info, { platform: amd64, subjects, mode: 'max' }));
  assert.ok(max.includes('"instruction":"FROM busybox"') && max.includes('"id":"npmrc"'));
  assert.ok(!max.includes('hunter2'));
});

test('local referrers: artifacts with a subject, replaced per predicate type', async () => {
  const store = await ContentStore.open(join(dir, 'store2'));
  const subject = await store.writeJson({ schemaVersion: 2, hello: 1 }, MediaType.OciManifest);
  const stmt = (n: number) => ({
    _type: 'x',
    predicateType: 'https://slsa.dev/provenance/v1',
    subject: [],
    predicate: { n },
  });
  const a = await writeArtifact(store, subject, stmt(1));
  await addLocalReferrers(store, subject.digest, [a]);
  const b = await writeArtifact(store, subject, stmt(2));
  await addLocalReferrers(store, subject.digest, [b]);
  const refs = await localReferrers(store, subject.digest);
  assert.deepEqual(
    refs.map((r) => r.digest),
    [b.digest],
  );
  const m = JSON.parse((await store.readBlob(b.digest)).toString());
  assert.equal(m.artifactType, 'application/vnd.in-toto+json');
  assert.equal(m.subject.digest, subject.digest);
  assert.equal(m.config.mediaType, MediaType.OciEmpty);
  assert.equal(m.layers[0].annotations['in-toto.io/predicate-type'], 'https://slsa.dev/provenance/v1');
});
