// biome-ignore-all lint/suspicious/noTemplateCurlyInString: compose file text, not templates
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parse } from 'yaml';
import { defaultImageName, planBuilds } from './plan.js';
import {
  checkProjectName,
  loadProject,
  mergeCompose,
  normalizeCompose,
  normalizeProjectName,
  validateCompose,
} from './project.js';

const work = mkdtempSync(join(tmpdir(), 'polyarch-compose-unit-'));
after(() => rmSync(work, { recursive: true, force: true }));

function dir(name: string, files: Record<string, string>): string {
  const d = join(work, name);
  mkdirSync(d, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text);
  return d;
}

const invalid: [string, string, string][] = [
  [
    'platforms as a string',
    'services:\n  web:\n    build:\n      platforms: linux/arm64\n',
    'services.web.build.platforms: must be array',
  ],
  [
    'a platform that is not a string',
    'services:\n  web:\n    build:\n      platforms: [linux/amd64, 3]\n',
    'services.web.build.platforms.1: must be string',
  ],
  ['build as a list', 'services:\n  web:\n    build: [a]\n', 'services.web.build: must be string or object'],
  [
    'args as a string',
    'services:\n  web:\n    build:\n      args: X=1\n',
    'services.web.build.args: must be object or array',
  ],
  [
    'an arg that is a map',
    'services:\n  web:\n    build:\n      args: {X: {a: 1}}\n',
    'services.web.build.args.X: must be string or number or boolean or null',
  ],
  [
    'no_cache as a string',
    'services:\n  web:\n    build:\n      no_cache: "yes"\n',
    'services.web.build.no_cache: must be boolean',
  ],
  ['image as a number', 'services:\n  web:\n    image: 3\n', 'services.web.image: must be string'],
  ['services as a list', 'services: [web]\n', 'services: must be object'],
  [
    'a secret without source',
    'services:\n  web:\n    build:\n      secrets: [{target: x}]\n',
    'services.web.build.secrets.0: must have property "source"',
  ],
  ['a service name with a slash', 'services:\n  a/b:\n    image: 3\n', 'services.a/b.image: must be string'],
];
for (const [name, text, want] of invalid)
  test(`validate: ${name}`, () => {
    assert.throws(() => validateCompose(parse(text), 'compose.yaml'), { message: `compose.yaml: ${want}` });
  });

test('validate: unknown top-level keys and service fields are allowed', () => {
  validateCompose(
    parse(
      'x-common: &c {a: 1}\nnetworks: {n: {}}\nservices:\n  web:\n    ports: ["80:80"]\n    build:\n      context: .\n      ssh: [default]\n',
    ),
    'compose.yaml',
  );
});

test('merge: a second file adds platforms, overrides scalars, merges args (list and map forms)', () => {
  const lookup = () => undefined;
  const a = normalizeCompose(
    parse(
      'services:\n  web:\n    image: app:1\n    build:\n      context: .\n      args: [A=1, B=2]\n      platforms: [linux/amd64]\n',
    ),
    lookup,
  );
  const b = normalizeCompose(
    parse(
      'services:\n  web:\n    image: app:2\n    build:\n      args: {B: 3, C: 4}\n      platforms: [linux/amd64, linux/arm64]\n      target: prod\n  api:\n    build: ./api\n',
    ),
    lookup,
  );
  assert.deepEqual(mergeCompose(a, b), {
    services: {
      web: {
        image: 'app:2',
        build: {
          context: '.',
          args: { A: '1', B: '3', C: '4' },
          platforms: ['linux/amd64', 'linux/arm64'],
          target: 'prod',
        },
      },
      api: { build: { context: './api' } },
    },
  });
});

test('merge: build as a string in the override replaces only the context', () => {
  const lookup = () => undefined;
  const a = normalizeCompose(parse('services:\n  web:\n    build: {context: a, dockerfile: D}\n'), lookup);
  const b = normalizeCompose(parse('services:\n  web:\n    build: b\n'), lookup);
  assert.deepEqual(mergeCompose(a, b), { services: { web: { build: { context: 'b', dockerfile: 'D' } } } });
});

test('loadProject: -f twice merges in order; .env feeds interpolation; paths stay project-relative', async () => {
  const d = dir('merge', {
    'compose.yaml': 'services:\n  web:\n    build:\n      context: web\n      args:\n        V: ${V}\n',
    'prod.yaml': 'name: prodapp\nservices:\n  web:\n    build:\n      platforms: [linux/arm64]\n',
    '.env': 'V=from-dotenv\n',
  });
  const p = await loadProject({ cwd: d, files: ['compose.yaml', 'prod.yaml'], env: {} });
  assert.equal(p.name, 'prodapp');
  assert.equal(p.dir, d);
  assert.deepEqual(p.services.web!.build, {
    context: 'web',
    args: { V: 'from-dotenv' },
    platforms: ['linux/arm64'],
  });
  const [b] = planBuilds(p);
  assert.equal(b!.contextDir, join(d, 'web'));
  assert.equal(b!.dockerfilePath, join(d, 'web', 'Dockerfile'));
  assert.deepEqual(b!.tags, ['prodapp-web']);
  assert.deepEqual(b!.platforms, ['linux/arm64']);
});

test('loadProject: default file lookup picks up compose.override.yaml; the environment beats .env', async () => {
  const d = dir('Over Ride.App', {
    'docker-compose.yml': 'services:\n  web:\n    image: ${IMG}\n    build: .\n',
    'compose.yaml': 'services:\n  web:\n    image: ${IMG}\n    build: .\n',
    'compose.override.yaml': 'services:\n  web:\n    platform: linux/arm/v7\n',
    '.env': 'IMG=dotenv\n',
  });
  const p = await loadProject({ cwd: d, env: { IMG: 'env' } });
  assert.deepEqual(p.files, [join(d, 'compose.yaml'), join(d, 'compose.override.yaml')]);
  assert.equal(p.name, 'overrideapp');
  assert.equal(p.services.web!.image, 'env');
  assert.deepEqual(planBuilds(p)[0]!.platforms, ['linux/arm/v7']);
});

test('loadProject: errors name the file', async () => {
  const d = dir('errors', {
    'compose.yaml': 'services:\n  web:\n    build:\n      platforms: linux/arm64\n',
    'broken.yaml': 'services:\n  web: [\n',
  });
  await assert.rejects(loadProject({ cwd: d, env: {} }), {
    message: 'compose.yaml: services.web.build.platforms: must be array',
  });
  await assert.rejects(loadProject({ cwd: d, files: ['broken.yaml'], env: {} }), {
    message: /^broken\.yaml: /,
  });
  await assert.rejects(loadProject({ cwd: d, files: ['missing.yaml'], env: {} }), {
    message: 'missing.yaml: no such file',
  });
  await assert.rejects(loadProject({ cwd: dir('empty', {}), env: {} }), {
    message: /^no configuration file provided/,
  });
});

const names: [string, string][] = [
  ['myapp', 'myapp'],
  ['My App', 'myapp'],
  ['Demo_App-2', 'demo_app-2'],
  ['__lead.ing', 'leading'],
  ['über', 'ber'],
];
for (const [input, want] of names)
  test(`project name from the directory: "${input}" → "${want}"`, () => {
    assert.equal(normalizeProjectName(input), want);
  });

test('explicit project names must already be valid', () => {
  assert.equal(checkProjectName('ok_1-x', 'name'), 'ok_1-x');
  assert.throws(() => checkProjectName('Bad', 'name'), { message: /^name: project name "Bad" is invalid/ });
  assert.throws(() => checkProjectName('-x', '--project-name'), {
    message: /^--project-name: project name "-x"/,
  });
});

test('image names: image: wins, else <project>-<service>, plus build.tags', async () => {
  assert.equal(defaultImageName('proj', 'Web'), 'proj-web');
  const d = dir('naming', {
    'compose.yaml':
      'name: proj\nservices:\n  a:\n    build: .\n  b:\n    image: reg.example/b:2\n    build:\n      context: .\n      tags: [reg.example/b:latest]\n  c:\n    image: nginx\n',
  });
  const p = await loadProject({ cwd: d, env: {} });
  const builds = planBuilds(p);
  assert.deepEqual(
    builds.map((b) => [b.service, b.tags]),
    [
      ['a', ['proj-a']],
      ['b', ['reg.example/b:2', 'reg.example/b:latest']],
    ],
  );
  assert.deepEqual(
    planBuilds(p, { services: ['b'] }).map((b) => b.service),
    ['b'],
  );
  assert.throws(() => planBuilds(p, { services: ['nope'] }), { message: 'no such service: nope' });
});

test('plan: --build-arg over build.args; platform must be in build.platforms; depends_on orders builds', async () => {
  const d = dir('plan', {
    'compose.yaml': [
      'services:',
      '  base:',
      '    build: {context: ., args: {A: "1", B: "2"}}',
      '  app:',
      '    depends_on: [base, db]',
      '    build: {context: ., dockerfile_inline: "FROM base"}',
      '  db:',
      '    image: postgres',
      '  bad:',
      '    platform: linux/s390x',
      '    build: {context: ., platforms: [linux/amd64]}',
      '',
    ].join('\n'),
  });
  const p = await loadProject({ cwd: d, env: {} });
  const [base, app] = planBuilds(p, { services: ['base', 'app'], buildArgs: { B: 'cli' } });
  assert.deepEqual(base!.buildArgs, { A: '1', B: 'cli' });
  assert.deepEqual(app!.after, ['base']);
  assert.equal(app!.dockerfileInline, 'FROM base');
  assert.equal(app!.dockerfilePath, undefined);
  assert.throws(() => planBuilds(p, { services: ['bad'] }), {
    message: 'service "bad": platform "linux/s390x" is not in build.platforms [linux/amd64]',
  });
});

test('plan: build secrets from top-level secrets (file relative to the project, environment), warnings, cycles', async () => {
  const d = dir('secrets', {
    'compose.yaml': [
      'secrets:',
      '  npmrc: {file: ./secrets/npmrc}',
      '  token: {environment: API_TOKEN}',
      'services:',
      '  web:',
      '    build:',
      '      context: .',
      '      secrets: [npmrc, {source: token, target: api}]',
      '      cache_from: ["type=registry,ref=x"]',
      '      ssh: [default]',
      '  a: {build: ., depends_on: {b: {condition: service_started}}}',
      '  b: {build: ., depends_on: [a]}',
      '  c: {build: {context: ., secrets: [nope]}}',
      '',
    ].join('\n'),
  });
  const p = await loadProject({ cwd: d, env: {} });
  const warnings: string[] = [];
  const [web] = planBuilds(p, { services: ['web'], warn: (m) => warnings.push(m) });
  assert.deepEqual(web!.secrets, [
    { id: 'npmrc', src: join(d, 'secrets', 'npmrc') },
    { id: 'api', env: 'API_TOKEN' },
  ]);
  assert.deepEqual(warnings, ['service "web": build.ssh is not supported and is ignored']);
  assert.deepEqual(
    web!.cacheFrom.map((c) => [c.type, c.ref]),
    [['registry', 'x']],
  );
  assert.throws(() => planBuilds(p, { services: ['a', 'b'] }), { message: 'dependency cycle: a -> b -> a' });
  assert.throws(() => planBuilds(p, { services: ['c'] }), {
    message: 'service "c": build.secrets: undefined secret "nope"',
  });
});

test('build.sbom / build.provenance: parsed as --sbom / --provenance, bad values named', async () => {
  const d = dir('attest', {
    'compose.yaml':
      'services:\n  a:\n    build:\n      context: .\n      sbom: true\n      provenance: mode=max\n  b:\n    build:\n      context: .\n      provenance: false\n',
  });
  const p = await loadProject({ cwd: d, env: {} });
  const [a, b] = planBuilds(p);
  assert.deepEqual(a!.attest, { sbom: { params: {} }, provenance: { mode: 'max', params: { mode: 'max' } } });
  assert.deepEqual(b!.attest, { provenance: null });
  const bad = dir('attest-bad', {
    'compose.yaml': 'services:\n  a:\n    build:\n      context: .\n      provenance: mode=full\n',
  });
  const q = await loadProject({ cwd: bad, env: {} });
  assert.throws(
    () => planBuilds(q),
    /^UsageError: service "a": build: invalid provenance "type=provenance,mode=full": mode must be min or max, not "full"$/,
  );
});
