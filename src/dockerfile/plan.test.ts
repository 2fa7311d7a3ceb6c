// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile and shell text, not templates
/**
 * ARG/ENV scoping across stages and platforms, stage graph, platform independence, image
 * configs and RUN command construction — named table cases against planBuild.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isDockerfileError } from './errors.js';
import { type PlanOptions, type PlanRun, planBuild, runCommand } from './plan.js';
import { parsePlatform as P } from '../platform/index.js';

const AMD64 = P('linux/amd64');
const ARM64 = P('linux/arm64');
const ARMV7 = P('linux/arm/v7');

/** The value of `ENV OUT=…` in the target stage for each platform. */
function out(dockerfile: string, opts: PlanOptions = {}): string[] {
  const plan = planBuild(dockerfile, { buildPlatform: AMD64, platforms: [AMD64], ...opts });
  return plan.platforms.map((p) => {
    const last = p.stages[p.stages.length - 1]!;
    for (const ins of [...last.instructions].reverse())
      if (ins.kind === 'ENV') {
        const kv = ins.pairs.find((x) => x.key === 'OUT');
        if (kv) return kv.value;
      }
    return '<no OUT>';
  });
}

type ScopeCase = [name: string, dockerfile: string, opts: PlanOptions, expected: string[]];

const scoping: ScopeCase[] = [
  [
    'global ARG is not visible in a stage without redeclaring',
    'ARG A=g\nFROM scratch\nENV OUT=${A:-none}\n',
    {},
    ['none'],
  ],
  ['redeclared global ARG takes the global default', 'ARG A=g\nFROM scratch\nARG A\nENV OUT=$A\n', {}, ['g']],
  [
    'build arg overrides the global default',
    'ARG A=g\nFROM scratch\nARG A\nENV OUT=$A\n',
    { buildArgs: { A: 'cli' } },
    ['cli'],
  ],
  ['stage default beats the global default', 'ARG A=g\nFROM scratch\nARG A=s\nENV OUT=$A\n', {}, ['s']],
  [
    'build arg beats the stage default',
    'FROM scratch\nARG A=s\nENV OUT=$A\n',
    { buildArgs: { A: 'cli' } },
    ['cli'],
  ],
  ['ARG without default and no build arg is empty', 'FROM scratch\nARG A\nENV OUT=[$A]\n', {}, ['[]']],
  ['ARG is not visible before its declaration', 'FROM scratch\nENV OUT=[$A]\nARG A=late\n', {}, ['[]']],
  [
    'ARG values carry into a stage built FROM that stage',
    'FROM scratch AS a\nARG A=1\nFROM a\nENV OUT=[$A]\n',
    {},
    ['[1]'],
  ],
  [
    'ARG does not reach an unrelated later stage',
    'FROM scratch AS a\nARG A=1\nFROM scratch\nENV OUT=[$A]\n',
    {},
    ['[]'],
  ],
  ['ENV does cross into a child stage', 'FROM scratch AS a\nENV A=1\nFROM a\nENV OUT=[$A]\n', {}, ['[1]']],
  ['ENV after an ARG of the same name wins', 'FROM scratch\nARG A=arg\nENV A=env\nENV OUT=$A\n', {}, ['env']],
  [
    'a later ARG replaces an ENV in the build env',
    'FROM scratch\nENV A=env\nARG A=again\nENV OUT=$A\n',
    {},
    ['again'],
  ],
  ['ARG default refers to an earlier ARG', 'FROM scratch\nARG A=1\nARG B=${A}-2\nENV OUT=$B\n', {}, ['1-2']],
  [
    'global ARG default refers to an earlier global',
    'ARG A=1\nARG B=$A.0\nFROM scratch\nARG B\nENV OUT=$B\n',
    {},
    ['1.0'],
  ],
  [
    'global default sees build arg of earlier global',
    'ARG A=1\nARG B=$A.0\nFROM scratch\nARG B\nENV OUT=$B\n',
    { buildArgs: { A: '7' } },
    ['7.0'],
  ],
  [
    'ENV pairs see the environment before the instruction',
    'FROM scratch\nENV A=1\nENV A=2 OUT=$A\n',
    {},
    ['1'],
  ],
  [
    'TARGETARCH needs ARG in the stage',
    'FROM scratch\nENV OUT=[$TARGETARCH]\n',
    { platforms: [ARM64] },
    ['[]'],
  ],
  [
    'TARGETARCH per platform',
    'FROM scratch\nARG TARGETARCH\nENV OUT=$TARGETARCH\n',
    { platforms: [AMD64, ARM64, ARMV7] },
    ['amd64', 'arm64', 'arm'],
  ],
  [
    'TARGETVARIANT per platform',
    'FROM scratch\nARG TARGETVARIANT\nENV OUT=[$TARGETVARIANT]\n',
    { platforms: [AMD64, ARMV7] },
    ['[]', '[v7]'],
  ],
  [
    'TARGETPLATFORM formats the variant',
    'FROM scratch\nARG TARGETPLATFORM\nENV OUT=$TARGETPLATFORM\n',
    { platforms: [ARMV7] },
    ['linux/arm/v7'],
  ],
  [
    'BUILDPLATFORM is the build platform for every target',
    'FROM scratch\nARG BUILDPLATFORM\nENV OUT=$BUILDPLATFORM\n',
    { platforms: [ARM64, ARMV7] },
    ['linux/amd64', 'linux/amd64'],
  ],
  [
    'BUILDARCH with an arm64 builder',
    'FROM scratch\nARG BUILDARCH BUILDOS\nENV OUT=$BUILDOS/$BUILDARCH\n',
    { buildPlatform: ARM64 },
    ['linux/arm64'],
  ],
  [
    'TARGETARCH in a $BUILDPLATFORM stage is still the target',
    'FROM --platform=$BUILDPLATFORM scratch\nARG TARGETARCH\nENV OUT=$TARGETARCH\n',
    { platforms: [ARM64] },
    ['arm64'],
  ],
  [
    'a default on TARGETARCH overrides the injected value',
    'FROM scratch\nARG TARGETARCH=x\nENV OUT=$TARGETARCH\n',
    { platforms: [ARM64] },
    ['x'],
  ],
  [
    'a build arg overrides TARGETARCH',
    'FROM scratch\nARG TARGETARCH\nENV OUT=$TARGETARCH\n',
    { platforms: [ARM64], buildArgs: { TARGETARCH: 'forced' } },
    ['forced'],
  ],
  [
    'global ARG default with a platform arg',
    'ARG IMG=base-$TARGETARCH\nFROM scratch\nARG IMG\nENV OUT=$IMG\n',
    { platforms: [AMD64, ARM64] },
    ['base-amd64', 'base-arm64'],
  ],
  [
    'quotes in ARG defaults are removed',
    'FROM scratch\nARG A="x y" B=\'$A\'\nENV OUT="$A|$B"\n',
    {},
    ['x y|$A'],
  ],
  [
    'escape directive applies to expansion',
    '# escape=`\nFROM scratch\nARG A=1\nENV OUT=`$A-$A\n',
    {},
    ['$A-1'],
  ],
  [
    'global ARG without default keeps the platform value',
    'ARG TARGETOS\nFROM scratch\nARG TARGETOS\nENV OUT=$TARGETOS\n',
    {},
    ['linux'],
  ],
  [
    'a build arg skips a failing global default',
    'ARG A=${X:?unset}\nFROM scratch\nARG A\nENV OUT=$A\n',
    { buildArgs: { A: 'ok' } },
    ['ok'],
  ],
  [
    'a build arg skips a failing stage default',
    'FROM scratch\nARG A=${X:?unset}\nENV OUT=$A\n',
    { buildArgs: { A: 'ok' } },
    ['ok'],
  ],
  [
    'global ARG declared twice: the later default wins',
    'ARG A=1\nARG A=2\nFROM scratch\nARG A\nENV OUT=$A\n',
    {},
    ['2'],
  ],
];

describe('ARG and ENV scoping', () => {
  for (const [name, df, opts, expected] of scoping)
    test(name, () => {
      assert.deepEqual(out(df, opts), expected);
    });
});

test('platformArgs in force: injected, replaced by a --build-arg or a global default', () => {
  const p = planBuild('ARG BUILDOS=plan9\nFROM scratch\n', {
    buildPlatform: AMD64,
    platforms: [ARMV7],
    buildArgs: { TARGETVARIANT: 'v6' },
  }).platforms[0]!;
  assert.deepEqual(p.platformArgs, {
    BUILDPLATFORM: 'linux/amd64',
    BUILDOS: 'plan9',
    BUILDARCH: 'amd64',
    BUILDVARIANT: '',
    TARGETPLATFORM: 'linux/arm/v7',
    TARGETOS: 'linux',
    TARGETARCH: 'arm',
    TARGETVARIANT: 'v6',
  });
  assert.deepEqual(p.stages[0]!.platformArgs, p.platformArgs);
});

describe('FROM expansion', () => {
  const bases = (df: string, opts: PlanOptions = {}) =>
    planBuild(df, { buildPlatform: AMD64, platforms: [AMD64], ...opts }).platforms.map((p) => {
      const b = p.stages[p.stages.length - 1]!.base;
      return b.type === 'image' ? b.ref : b.type;
    });
  test('global ARG in the image name', () =>
    assert.deepEqual(bases('ARG V=3\nFROM alpine:$V\n'), ['alpine:3']));
  test('build arg in the image name', () =>
    assert.deepEqual(bases('ARG V=3\nFROM alpine:$V\n', { buildArgs: { V: '4' } }), ['alpine:4']));
  test('platform args usable in FROM without declaration', () =>
    assert.deepEqual(bases('FROM img-$TARGETARCH\n', { platforms: [AMD64, ARM64] }), [
      'img-amd64',
      'img-arm64',
    ]));
  test('stage ARG is not used by a later FROM', () =>
    assert.deepEqual(bases('FROM scratch\nARG V=1\nFROM alpine:${V:-none}\n'), ['alpine:none']));
  test('FROM --platform picks the stage platform', () => {
    const plan = planBuild('FROM --platform=$BUILDPLATFORM alpine\n', {
      buildPlatform: AMD64,
      platforms: [ARM64],
    });
    assert.deepEqual(plan.platforms[0]!.stages[0]!.platform, AMD64);
    assert.equal(plan.platforms[0]!.stages[0]!.platformSource, 'flag');
  });
});

describe('platform independence', () => {
  const df = [
    'FROM --platform=$BUILDPLATFORM alpine AS gen',
    'RUN generate',
    'FROM --platform=$BUILDPLATFORM alpine AS cross',
    'ARG TARGETARCH',
    'RUN build $TARGETARCH',
    'FROM gen AS gen2',
    'RUN more',
    'FROM alpine',
    'COPY --from=gen2 / /',
    'COPY --from=cross / /',
    '',
  ].join('\n');
  const plan = planBuild(df, { buildPlatform: AMD64, platforms: [AMD64, ARM64, ARMV7] });
  const byName = (i: number, name: string) => plan.platforms[i]!.stages.find((s) => s.name === name)!;
  test('BUILDPLATFORM stage without TARGET args is target-independent with one key', () => {
    assert.equal(byName(0, 'gen').targetIndependent, true);
    assert.equal(new Set(plan.platforms.map((_, i) => byName(i, 'gen').key)).size, 1);
  });
  test('a child of an independent stage inherits its platform and independence', () => {
    assert.equal(byName(1, 'gen2').platformSource, 'flag');
    assert.deepEqual(byName(1, 'gen2').platform, AMD64);
    assert.equal(new Set(plan.platforms.map((_, i) => byName(i, 'gen2').key)).size, 1);
  });
  test('a stage consuming TARGETARCH is target-dependent with one key per platform', () => {
    assert.equal(byName(0, 'cross').targetIndependent, false);
    assert.deepEqual(byName(0, 'cross').targetArgsUsed, ['TARGETARCH']);
    assert.equal(new Set(plan.platforms.map((_, i) => byName(i, 'cross').key)).size, 3);
  });
  test('a global ARG derived from TARGETARCH makes its consumers target-dependent', () => {
    const df = [
      'ARG IMG=tool-$TARGETARCH',
      'ARG SUFFIX=${IMG}-x',
      'FROM --platform=$BUILDPLATFORM $IMG AS viafrom',
      'FROM --platform=$BUILDPLATFORM alpine AS viaarg',
      'ARG SUFFIX',
      'FROM --platform=$BUILDPLATFORM alpine AS plain',
      'ARG SUFFIX=constant',
      '',
    ].join('\n');
    const last = (i: number, target: string) =>
      planBuild(df, { buildPlatform: AMD64, platforms: [AMD64, ARM64], target }).platforms[i]!.stages.at(-1)!;
    assert.deepEqual(last(0, 'viafrom').targetArgsUsed, ['TARGETARCH']);
    assert.equal(last(0, 'viafrom').targetIndependent, false);
    assert.deepEqual(last(0, 'viaarg').targetArgsUsed, ['TARGETARCH']);
    assert.notEqual(last(0, 'viaarg').key, last(1, 'viaarg').key);
    assert.equal(last(0, 'plain').targetIndependent, true);
    assert.equal(last(0, 'plain').key, last(1, 'plain').key);
  });
  test('the final stage runs on each target', () => {
    assert.deepEqual(
      plan.platforms.map((p) => p.stages[p.stages.length - 1]!.platform),
      [AMD64, ARM64, ARMV7],
    );
  });
});

describe('stage graph', () => {
  test('unreachable stages are pruned and dependencies come first', () => {
    const plan = planBuild('FROM a AS x\nFROM b AS y\nFROM c AS z\nCOPY --from=x / /\n', {
      platforms: [AMD64],
    });
    assert.deepEqual(
      plan.platforms[0]!.stages.map((s) => s.name),
      ['x', 'z'],
    );
  });
  test('--target selects a stage', () => {
    const plan = planBuild('FROM a AS x\nFROM b AS y\n', { platforms: [AMD64], target: 'X' });
    assert.deepEqual(
      plan.platforms[0]!.stages.map((s) => s.name),
      ['x'],
    );
  });
  test('COPY --from a stage defined later is an error', () => {
    assert.throws(
      () => planBuild('FROM a AS x\nCOPY --from=y / /\nFROM b AS y\n', { platforms: [AMD64], target: 'x' }),
      /Dockerfile:2: cannot copy from stage "y", it needs to be defined before current stage "x"/,
    );
  });
  test('a chain of 30,000 stages plans (no recursion as deep as the chain)', () => {
    const lines = ['FROM busybox AS s0'];
    for (let i = 1; i < 30_000; i++) lines.push(`FROM s${i - 1} AS s${i}`, `ENV N=${i}`);
    const plan = planBuild(`${lines.join('\n')}\n`, { platforms: [AMD64] });
    const stages = plan.platforms[0]!.stages;
    assert.equal(stages.length, 30_000);
    assert.equal(stages[0]!.name, 's0');
    assert.deepEqual(stages[29_999]!.dependsOn, [29_998]);
  });
  test('platforms that normalise to one are planned once, in first-seen order', () => {
    const plan = planBuild('FROM a\n', {
      platforms: [ARM64, P('linux/arm64/v8'), P('linux/aarch64'), AMD64, ARM64, AMD64],
    });
    assert.deepEqual(
      plan.platforms.map((p) => p.platformArgs.TARGETPLATFORM),
      ['linux/arm64', 'linux/amd64'],
    );
  });
  test('a cycle is reported as such', () => {
    const df = 'FROM a AS x\nCOPY --from=y / /\nFROM b AS y\nCOPY --from=x / /\n';
    assert.throws(
      () => planBuild(df, { platforms: [AMD64], target: 'x' }),
      /circular dependency detected on stage: x/,
    );
  });
  test('COPY --from does not expand variables', () => {
    assert.throws(
      () => planBuild('ARG S=x\nFROM a AS x\nFROM b\nCOPY --from=$S / /\n', { platforms: [AMD64] }),
      /Dockerfile:4: variable expansion is not supported for --from/,
    );
  });
  test('ONBUILD triggers of a parent stage run first in the child, located at its FROM', () => {
    const df = 'FROM scratch AS base\nONBUILD ENV T=triggered\nFROM base\nENV OUT=$T\n';
    const child = planBuild(df, { platforms: [AMD64] }).platforms[0]!.stages[1]!;
    const first = child.instructions[0]!;
    assert.equal(first.kind, 'ENV');
    assert.equal(first.onbuild, true);
    assert.equal(first.range.start.line, 3);
    assert.deepEqual(out(df), ['triggered']);
  });
  test('ONBUILD triggers of a base image config run first', () => {
    const plan = planBuild('FROM img\nENV OUT=$T\n', {
      platforms: [AMD64],
      imageConfig: () => ({ onBuild: ['ENV T=from-image'] }),
    });
    const ins = plan.platforms[0]!.stages[0]!.instructions;
    assert.deepEqual(
      ins.map((i) => i.kind === 'ENV' && i.pairs[0]!.value),
      ['from-image', 'from-image'],
    );
  });
  test('an error in an unneeded stage does not fail the build', () => {
    assert.doesNotThrow(() => planBuild('FROM a AS x\nENV A=${X:?no}\nFROM b\n', { platforms: [AMD64] }));
    assert.throws(
      () => planBuild('FROM a AS x\nENV A=${X:?no}\nFROM b\n', { platforms: [AMD64], target: 'x' }),
      (e) => isDockerfileError(e) && e.range.start.line === 2 && /X: no/.test(e.message),
    );
  });
});

describe('image configs', () => {
  test('base image ENV and WORKDIR take part in expansion and state', () => {
    const plan = planBuild('FROM golang\nWORKDIR src\nENV P=$GOPATH/bin\nRUN go build\n', {
      platforms: [AMD64],
      imageConfig: (ref) => (ref === 'golang' ? { env: ['GOPATH=/go'], workingDir: '/go' } : undefined),
    });
    const st = plan.platforms[0]!.stages[0]!;
    assert.equal(st.baseConfigKnown, true);
    const run = st.instructions.find((i) => i.kind === 'RUN') as PlanRun;
    assert.equal(run.state.workdir, '/go/src');
    // BuildKit adds the default PATH when the base image has none.
    assert.deepEqual(run.state.env, [
      'GOPATH=/go',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'P=/go/bin',
    ]);
  });
});

describe('dispatch-time details', () => {
  const plan1 = (df: string) => planBuild(df, { platforms: [AMD64] });
  test('COPY heredoc bodies keep their quotes when expanded', () => {
    const c = plan1('FROM scratch\nARG N=x\nCOPY <<EOF /f\n"$N" \'$N\'\nEOF\n').platforms[0]!.stages[0]!
      .instructions[1]!;
    assert.equal(c.kind === 'COPY' && c.contents[0]!.data, '"x" \'x\'\n');
  });
  test('JSONArgsRecommended is quiet only after a SHELL', () => {
    const rules = (df: string) => plan1(df).warnings.map((w) => `${w.rule}:${w.range.start.line}`);
    assert.deepEqual(rules('FROM a\nSHELL ["bash", "-c"]\nCMD x\n'), []);
    assert.deepEqual(rules('FROM a\nCMD x\nSHELL ["bash", "-c"]\n'), ['JSONArgsRecommended:2']);
    assert.deepEqual(rules('FROM a AS b\nSHELL ["bash", "-c"]\nFROM b\nCMD x\n'), []);
  });
  test('STOPSIGNAL must be a signal', () => {
    assert.doesNotThrow(() => plan1('FROM a\nSTOPSIGNAL SIGKILL\nSTOPSIGNAL 9\nSTOPSIGNAL term\n'));
    assert.throws(() => plan1('FROM a\nSTOPSIGNAL SIGNOPE\n'), /Dockerfile:2: Invalid signal: SIGNOPE/);
  });
  test('scratch gets the default PATH', () => {
    const s = plan1('FROM scratch\nRUN x\n').platforms[0]!.stages[0]!.instructions[0] as PlanRun;
    assert.deepEqual(s.state.env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
  });
  test('proxy build args reach RUN without an ARG', () => {
    const r = planBuild('FROM a\nRUN x\n', {
      platforms: [AMD64],
      buildArgs: { HTTP_PROXY: 'http://p:3128' },
    });
    const run = r.platforms[0]!.stages[0]!.instructions[0] as PlanRun;
    assert.deepEqual(run.proxy, { HTTP_PROXY: 'http://p:3128' });
    assert.deepEqual(r.unusedBuildArgs, []);
  });
});

describe('runCommand', () => {
  const runs = (df: string) =>
    planBuild(`FROM alpine\n${df}`, { platforms: [AMD64] }).platforms[0]!.stages[0]!.instructions.filter(
      (i): i is PlanRun => i.kind === 'RUN',
    );
  test('shell form prepends the shell', () =>
    assert.deepEqual(runCommand(runs('RUN echo hi\n')[0]!).argv, ['/bin/sh', '-c', 'echo hi']));
  test('exec form is used as is', () =>
    assert.deepEqual(runCommand(runs('RUN ["a", "b"]\n')[0]!).argv, ['a', 'b']));
  test('SHELL changes the shell', () =>
    assert.deepEqual(runCommand(runs('SHELL ["bash", "-c"]\nRUN x\n')[0]!).argv, ['bash', '-c', 'x']));
  test('a lone heredoc is the script', () =>
    assert.deepEqual(runCommand(runs('RUN <<EOF\necho a\necho b\nEOF\n')[0]!).argv, [
      '/bin/sh',
      '-c',
      'echo a\necho b\n',
    ]));
  test('<<- removes leading tabs from the script', () =>
    assert.deepEqual(runCommand(runs('RUN <<-EOF\n\techo a\n\tEOF\n')[0]!).argv, [
      '/bin/sh',
      '-c',
      'echo a\n',
    ]));
  test('a shebang heredoc becomes a file', () => {
    const r = runCommand(runs('RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n')[0]!);
    assert.equal(r.script?.data, '#!/usr/bin/env python3\nprint(1)\n');
    assert.deepEqual(r.argv, [r.script!.path]);
  });
  test('other heredocs are reconstituted for the shell', () =>
    assert.deepEqual(runCommand(runs('RUN cat <<A > /f\nbody\nA\n')[0]!).argv, [
      '/bin/sh',
      '-c',
      'cat <<A > /f\nbody\nA',
    ]));
});
