/**
 * Keeps src/ layered: a module may import only from layers below its own (or from
 * itself). The ranks mirror the pipeline: platform → oci → content/registry →
 * layer → image → dockerfile → snapshot → exec → build → builder → compose → index → cli.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const RANKS: Record<string, number> = {
  util: 0,
  'version.ts': 0,
  platform: 1,
  progress: 1,
  oci: 2,
  content: 3,
  registry: 3,
  layer: 4,
  history: 4,
  image: 5,
  dockerfile: 5,
  snapshot: 6,
  buildkit: 6,
  exec: 7,
  build: 8,
  builder: 9,
  compose: 10,
  'index.ts': 11,
  cli: 12,
};

const here = dirname(fileURLToPath(import.meta.url));
// Compiled to dist/test/; the sources are two levels up.
const srcRoot = resolve(here, '..', '..', 'src');

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

function moduleOf(file: string): string {
  return relative(srcRoot, file).split('/')[0]!;
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

test('every src module has a rank', () => {
  for (const file of walk(srcRoot)) {
    const mod = moduleOf(file);
    assert.ok(
      mod in RANKS,
      `${relative(srcRoot, file)}: module "${mod}" has no rank in test/layering.test.ts`,
    );
  }
});

test('imports flow one way: no lower layer imports a higher one', () => {
  const violations: string[] = [];
  for (const file of walk(srcRoot)) {
    if (file.endsWith('.test.ts')) continue;
    const from = moduleOf(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2]!;
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(file), spec);
      const to = moduleOf(target.replace(/\.js$/, '.ts'));
      if (to === from) continue;
      if ((RANKS[to] ?? 99) >= (RANKS[from] ?? -1))
        violations.push(`${relative(srcRoot, file)} imports ${spec} (${from} → ${to})`);
    }
  }
  assert.deepEqual(violations, []);
});

test('the layering check itself catches an upward import', () => {
  // Guard against a regex that silently matches nothing.
  const sample =
    "import { x } from '../cli/main.js';\nexport { y } from './z.js';\nawait import('../build/a.js');";
  const specs = [...sample.matchAll(IMPORT)].map((m) => m[1] ?? m[2]);
  assert.deepEqual(specs, ['../cli/main.js', './z.js', '../build/a.js']);
});
