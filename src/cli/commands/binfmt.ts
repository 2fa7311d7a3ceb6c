import type { Command } from 'commander';
import type { CliContext } from '../context.js';

interface BinfmtFlags {
  install?: string[];
  uninstall?: string[];
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function register(program: Command, ctx: CliContext): void {
  program
    .command('binfmt')
    .description('Show, install or uninstall QEMU emulators for running foreign-architecture programs')
    .option(
      '--install <list>',
      'register emulators: "all" or a list like arm64,arm,riscv64 (repeatable)',
      collect,
    )
    .option('--uninstall <list>', 'unregister emulators: qemu-aarch64,... or "all" (repeatable)', collect)
    .addHelpText(
      'after',
      '\nPrints JSON {"supported": [...], "emulators": [...], "broken": [...]}; each broken emulator\n' +
        "also gets a WARNING line on stderr. Emulators come from Debian's qemu-user-static.",
    )
    .action(async (flags: BinfmtFlags) => {
      const { binfmtStatus, installEmulators, uninstallEmulators } = await import('../../exec/binfmt.js');
      const log = (line: string) => ctx.err.write(`${line}\n`);
      // Uninstall first, so `--uninstall X --install X` re-registers X (tonistiigi/binfmt's order).
      if (flags.uninstall) await uninstallEmulators(flags.uninstall, { log });
      if (flags.install) await installEmulators(flags.install, { log });
      const report = await binfmtStatus();
      for (const p of report.problems) ctx.err.write(`WARNING: emulator ${p.name} is broken: ${p.reason}\n`);
      const { problems: _, ...json } = report;
      ctx.out.write(`${JSON.stringify(json, null, 2)}\n`);
    });
}
