import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ELF_ARCHITECTURES, exitElf } from './elf.js';
import { elfArchitecture, runProgram } from './emulators.js';
import { hostPlatformMaximum } from './host.js';
import { platformVector } from './match.js';

// These run for real: natively for the host's architecture, under the QEMU emulators
// registered in binfmt_misc for the rest (scripts/setup.sh registers them). 386 on an amd64
// host depends on the kernel (IA32 emulation): some kernels run it, some do not, and Debian
// registers no qemu-i386 handler on amd64, so there it is checked only where it runs.
const kernelDependent = new Set(
  platformVector(hostPlatformMaximum())
    .map((p) => p.architecture)
    .filter((a) => a !== hostPlatformMaximum().architecture),
);
describe('exitElf programs run and exit with the status asked for', () => {
  for (const arch of ELF_ARCHITECTURES) {
    test(arch, async (t) => {
      // The header names the architecture its binfmt_misc handler selects on.
      assert.equal(elfArchitecture(exitElf(arch).subarray(0, 20).toString('hex')), arch);
      const first = await runProgram(exitElf(arch));
      if (kernelDependent.has(arch) && !first.ok) {
        t.skip(`linux/${arch} programs do not run on this kernel and no emulator is registered for them`);
        return;
      }
      assert.deepEqual(first, { ok: true });
      // A status other than 0 proves the instructions ran rather than something exiting 0.
      assert.deepEqual(await runProgram(exitElf(arch, 42)), { ok: false, reason: 'exit status 42' });
    });
  }
});

test('a program whose code is garbage fails the probe', async () => {
  const bad = exitElf('amd64');
  bad.fill(0xff, bad.length - 12); // replace the instructions with invalid opcodes
  const r = await runProgram(bad);
  assert.equal(r.ok, false);
  assert.match(r.reason ?? '', /killed by SIG(ILL|SEGV)/);
});

test('unknown architecture and bad status are errors', () => {
  assert.throws(() => exitElf('z80'), { message: 'no test program for architecture "z80"' });
  assert.throws(() => exitElf('arm64', 256), { message: 'exit status 256 is not 0..255' });
});
