import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ContainerConfig } from '../oci/index.js';
import { applyChanges } from './changes.js';

const cases: Array<{ name: string; changes: string[]; want: ContainerConfig }> = [
  { name: 'CMD exec form', changes: ['CMD ["sh", "-c", "echo hi"]'], want: { Cmd: ['sh', '-c', 'echo hi'] } },
  {
    name: 'CMD shell form',
    changes: ['CMD echo "hi there"'],
    want: { Cmd: ['/bin/sh', '-c', 'echo "hi there"'] },
  },
  {
    name: 'CMD broken JSON is shell form',
    changes: ['CMD ["sh"'],
    want: { Cmd: ['/bin/sh', '-c', '["sh"'] },
  },
  { name: 'lower-case instruction', changes: ['cmd ["sh"]'], want: { Cmd: ['sh'] } },
  {
    name: 'ENTRYPOINT alone clears CMD',
    changes: ['ENTRYPOINT ["/bin/busybox"]'],
    want: { Entrypoint: ['/bin/busybox'] },
  },
  {
    name: 'ENTRYPOINT keeps a CMD given in the same changes (either order)',
    changes: ['ENTRYPOINT ["/bin/busybox"]', 'CMD ["sh"]'],
    want: { Entrypoint: ['/bin/busybox'], Cmd: ['sh'] },
  },
  {
    name: 'ENV pairs with quotes and escapes',
    changes: ['ENV A=1 B="two words" C=a\\ b D=\'$A\''],
    want: { Env: ['A=1', 'B=two words', 'C=a b', 'D=$A'] },
  },
  {
    name: 'ENV legacy form and expansion',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Dockerfile variables, not a template
    changes: ['ENV PATH /usr/bin:/bin', 'ENV P2=${PATH}:/x Q=$PATH R=${NOPE:-dflt} S=${PATH:+set} T=\\$PATH'],
    want: {
      Env: ['PATH=/usr/bin:/bin', 'P2=/usr/bin:/bin:/x', 'Q=/usr/bin:/bin', 'R=dflt', 'S=set', 'T=$PATH'],
    },
  },
  {
    name: 'ENV redefinition keeps order',
    changes: ['ENV A=1 B=2', 'ENV A=3'],
    want: { Env: ['A=3', 'B=2'] },
  },
  {
    name: 'EXPOSE ports, protocols and ranges',
    changes: ['EXPOSE 80 53/udp', 'EXPOSE 8000-8001/TCP'],
    want: { ExposedPorts: { '80/tcp': {}, '53/udp': {}, '8000/tcp': {}, '8001/tcp': {} } },
  },
  {
    name: 'LABEL pairs and legacy form',
    changes: ['LABEL a=1 "b c"="d e"', 'LABEL maintainer someone <x@y>'],
    want: { Labels: { a: '1', 'b c': 'd e', maintainer: 'someone <x@y>' } },
  },
  { name: 'USER', changes: ['USER nobody:nogroup'], want: { User: 'nobody:nogroup' } },
  {
    name: 'VOLUME JSON and words',
    changes: ['VOLUME ["/data", "/a b"]', 'VOLUME /x /y'],
    want: { Volumes: { '/data': {}, '/a b': {}, '/x': {}, '/y': {} } },
  },
  {
    name: 'WORKDIR relative joins',
    changes: ['WORKDIR /app', 'WORKDIR src/../lib'],
    want: { WorkingDir: '/app/lib' },
  },
  { name: 'WORKDIR relative to /', changes: ['WORKDIR work'], want: { WorkingDir: '/work' } },
  { name: 'STOPSIGNAL name', changes: ['STOPSIGNAL SIGQUIT'], want: { StopSignal: 'SIGQUIT' } },
  { name: 'STOPSIGNAL number', changes: ['STOPSIGNAL 9'], want: { StopSignal: '9' } },
];

for (const c of cases) {
  test(`applyChanges: ${c.name}`, () => {
    assert.deepEqual(applyChanges({}, c.changes), c.want);
  });
}

test('applyChanges does not modify its input and expands from the existing Env', () => {
  const base: ContainerConfig = { Env: ['HOME=/root'] };
  const out = applyChanges(base, ['WORKDIR $HOME/x']);
  assert.deepEqual(base, { Env: ['HOME=/root'] });
  assert.equal(out.WorkingDir, '/root/x');
});

const bad: Array<[string, string, RegExp]> = [
  [
    'unsupported instruction',
    'RUN echo hi',
    /invalid --change "RUN echo hi": RUN is not a supported change \(CMD, /,
  ],
  ['empty change', '', /expected INSTRUCTION/],
  ['missing argument', 'CMD', /CMD needs an argument/],
  ['bad port', 'EXPOSE 80/ftp', /invalid port "80\/ftp"/],
  ['port out of range', 'EXPOSE 70000', /invalid port range/],
  ['bad signal', 'STOPSIGNAL SIGNOPE', /invalid signal "SIGNOPE"/],
  ['ENV without value', 'ENV A', /ENV needs KEY=VALUE/],
  ['ENV empty key', 'ENV =x', /is not KEY=VALUE/],
  ['unterminated quote', 'ENV A="x', /unterminated double quote/],
  ['USER with two words', 'USER a b', /USER takes one argument/],
  ['bad substitution', 'ENV A=${B', /missing "}"/],
];

for (const [name, change, re] of bad) {
  test(`applyChanges rejects ${name}`, () => {
    assert.throws(
      () => applyChanges({}, [change]),
      (err: Error & { code?: string }) => {
        assert.match(err.message, re);
        assert.equal(err.code, 'INVALID_ARGUMENT');
        return true;
      },
    );
  });
}
