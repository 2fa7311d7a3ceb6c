/**
 * Image config produced by a stage: BuildKit's config rules, on real plans.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stageImageConfig } from './config.js';
import { planBuild } from './plan.js';

const last = (df: string) => {
  const p = planBuild(df, { platforms: [{ os: 'linux', architecture: 'amd64' }] }).platforms[0]!;
  return p.stages[p.stages.length - 1]!;
};

test('every config instruction lands in the config', () => {
  const { config, author } = stageImageConfig(
    last(
      [
        'FROM scratch',
        'MAINTAINER me',
        'ENV A=1 B=2',
        'ENV A=3',
        'LABEL l=v',
        'WORKDIR /srv',
        'USER app',
        'EXPOSE 80 53/udp',
        'VOLUME /data',
        'STOPSIGNAL SIGINT',
        'SHELL ["/bin/bash", "-c"]',
        'HEALTHCHECK --interval=5s --retries=2 CMD true',
        'ONBUILD RUN echo later',
        'ENTRYPOINT ["/app"]',
        'CMD serve',
        '',
      ].join('\n'),
    ),
  );
  assert.equal(author, 'me');
  assert.deepEqual(config.Env, [
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'A=3',
    'B=2',
  ]);
  assert.deepEqual(config.Labels, { l: 'v' });
  assert.equal(config.WorkingDir, '/srv');
  assert.equal(config.User, 'app');
  assert.deepEqual(config.ExposedPorts, { '80/tcp': {}, '53/udp': {} });
  assert.deepEqual(config.Volumes, { '/data': {} });
  assert.equal(config.StopSignal, 'SIGINT');
  assert.deepEqual(config.Shell, ['/bin/bash', '-c']);
  assert.deepEqual(config.Healthcheck, { Test: ['CMD-SHELL', 'true'], Interval: 5e9, Retries: 2 });
  assert.deepEqual(config.OnBuild, ['RUN echo later']);
  assert.deepEqual(config.Entrypoint, ['/app']);
  assert.deepEqual(config.Cmd, ['/bin/bash', '-c', 'serve']);
});

test('ENTRYPOINT clears an inherited CMD, not one set in the same stage', () => {
  const base = { Cmd: ['sh'], Env: ['PATH=/bin'] };
  assert.equal(stageImageConfig(last('FROM img\nENTRYPOINT ["x"]\n'), base).config.Cmd, null);
  assert.deepEqual(stageImageConfig(last('FROM img\nCMD ["y"]\nENTRYPOINT ["x"]\n'), base).config.Cmd, ['y']);
  assert.deepEqual(stageImageConfig(last('FROM img\nRUN true\n'), base).config.Cmd, ['sh']);
});

test('the base config is not modified and its ONBUILD triggers are consumed', () => {
  const base = { Env: ['PATH=/bin', 'X=1'], OnBuild: ['RUN a'] };
  const { config } = stageImageConfig(last('FROM img\nENV X=2\n'), base);
  assert.deepEqual(config.Env, ['PATH=/bin', 'X=2']);
  assert.equal(config.OnBuild, null);
  assert.deepEqual(base.Env, ['PATH=/bin', 'X=1']);
});
