/**
 * The polyarch command line: a thin adapter that parses flags with commander, calls the
 * library and prints. `runCli(argv)` returns the exit code instead of exiting, so it can
 * be driven in-process by tests.
 */
import { createRequire } from 'node:module';
import type * as CommanderModule from 'commander';
import { errorMessage, isPolyarchError } from '../util/errors.js';
import { VERSION } from '../version.js';
import { commands } from './commands/index.js';
import { type CliContext, processContext } from './context.js';
import { explainUnsupportedFlags } from './unsupported.js';

// commander is CommonJS: require() loads it without the ESM wrapper's source scan (the
// cjs-module-lexer pass an `import` of CommonJS costs), a few ms of every command's start-up.
const { Command, CommanderError } = createRequire(import.meta.url)('commander') as typeof CommanderModule;
type Command = CommanderModule.Command;

/**
 * The program with the commands `argv` needs: only the module of the command argv[0] names,
 * or every command (help, a bare `polyarch`, an unknown word — so help and "unknown command"
 * errors see the full list).
 */
export async function makeProgram(ctx: CliContext, argv: readonly string[] = []): Promise<Command> {
  const program = new Command('polyarch');
  program
    .description('Build, ship, inspect and run multi-platform container images, with no daemon')
    .version(`polyarch v${VERSION}`, '-v, --version', 'Show the polyarch version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.out.write(s),
      writeErr: (s) => ctx.err.write(s),
      outputError: (s, write) => write(`ERROR: ${s.replace(/^error: /, '')}`),
    });
  // Options after a sub-command belong to it (`run IMAGE -v x` is not polyarch's --version).
  program.enablePositionalOptions();
  const wanted = commands.find((c) => argv[0] !== undefined && c.names.includes(argv[0]));
  const modules = await Promise.all((wanted ? [wanted] : commands).map((c) => c.load()));
  for (const m of modules) m.register(program, ctx);
  // Sub-commands inherit the same error handling and output.
  for (const cmd of program.commands) inherit(cmd, ctx);
  return program;
}

function inherit(cmd: Command, ctx: CliContext): void {
  cmd.exitOverride().configureOutput({
    writeOut: (s) => ctx.out.write(s),
    writeErr: (s) => ctx.err.write(s),
    outputError: (s, write) => write(`ERROR: ${s.replace(/^error: /, '')}`),
  });
  cmd.showHelpAfterError('(run with --help for usage)');
  explainUnsupportedFlags(cmd);
  for (const sub of cmd.commands) inherit(sub, ctx);
}

/**
 * Flags that buildx defines with a value that is optional only in the `--flag=value` form
 * (pflag's NoOptDefVal): bare, they mean the value given here and never take the next word,
 * so `build --sbom .` keeps `.` as the context. Commander would take it as the value.
 */
const BARE_FLAG_VALUES: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  build: { '--provenance': 'true', '--sbom': 'true' },
};

function expandBareFlags(argv: readonly string[]): string[] {
  // `build …`, or `buildx build …` / `builder build …`.
  const at = argv[0] === 'buildx' || argv[0] === 'builder' ? 1 : 0;
  const bare = argv[at] === undefined ? undefined : BARE_FLAG_VALUES[argv[at]];
  if (!bare) return [...argv];
  const end = argv.indexOf('--');
  return argv.map((a, i) =>
    i > at && (end < 0 || i < end) && bare[a] !== undefined ? `${a}=${bare[a]}` : a,
  );
}

/** Runs the CLI with `argv` (no node/script prefix) and returns the exit code. */
export async function runCli(argv: string[], ctx: CliContext = processContext()): Promise<number> {
  try {
    const program = await makeProgram(ctx, argv);
    await program.parseAsync(expandBareFlags(argv), { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    return reportError(err, ctx);
  }
}

export function reportError(err: unknown, ctx: CliContext): number {
  if (err instanceof CommanderError) {
    // Help and version requests end with code 0; anything else commander rejects is usage.
    if (
      err.code === 'commander.helpDisplayed' ||
      err.code === 'commander.version' ||
      err.code === 'commander.help'
    )
      return 0;
    return 2;
  }
  if (isPolyarchError(err)) {
    ctx.err.write(`ERROR: ${err.message}\n`);
    return err.exitCode;
  }
  // An unexpected failure still ends with one line; POLYARCH_DEBUG=1 shows the stack.
  ctx.err.write(`ERROR: ${errorMessage(err)}\n`);
  if (ctx.env.POLYARCH_DEBUG && err instanceof Error && err.stack) ctx.err.write(`${err.stack}\n`);
  return 1;
}
