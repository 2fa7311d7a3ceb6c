import type { Command } from 'commander';
import type { CliContext } from '../context.js';

interface RunFlags {
  platform?: string;
  allPlatforms?: boolean;
  rm?: boolean;
  env: string[];
  envFile: string[];
  volume: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  network?: string;
  interactive?: boolean;
  tty?: boolean;
  parallel?: boolean;
  pull: string;
  detach?: boolean;
  name?: string;
  publish: string[];
  publishAll?: boolean;
  restart?: string;
}

/** Chunks to a text-only output (in-process tests), keeping UTF-8 sequences split across chunks whole. */
function textSink(out: { write(text: string): unknown }): (chunk: Buffer) => void {
  const decoder = new TextDecoder('utf-8');
  return (b) => out.write(decoder.decode(b, { stream: true }));
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function register(program: Command, ctx: CliContext): void {
  // `run IMAGE sh -c ...` passes everything after IMAGE to the container (passThroughOptions),
  // which commander allows only when program options are positional: `polyarch -v` still
  // prints the version, but `polyarch run -v SRC:DST` is a volume, as in docker.
  program
    .command('run')
    .description('Run a command in a new container, once per platform variant of the image')
    .argument('<image>', 'image reference or ID (pulled when missing)')
    .argument('[command...]', 'command and arguments (default: the image Entrypoint and Cmd)')
    .option(
      '--platform <list>',
      'platforms to run, comma-separated (default: the host; several = a matrix run)',
    )
    .option('--all-platforms', 'run on every platform the image has')
    .option('--parallel', "run a matrix's platforms at the same time (default: one after the other)")
    .option('--rm', "remove the container's filesystem when it exits")
    .option(
      '-e, --env <K=V>',
      "set an environment variable; a bare K takes this process's value (repeatable)",
      collect,
      [],
    )
    .option('--env-file <file>', 'read K=V lines from a file (repeatable)', collect, [])
    .option('-v, --volume <src:dst[:ro]>', 'bind-mount a host path (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user>', 'user[:group] (name or id) to run as')
    .option('--entrypoint <cmd>', 'override the image Entrypoint ("" clears it)')
    .option('--network <mode>', 'bridge (own network namespace, via pasta), host or none', 'bridge')
    .option(
      '-p, --publish <[ip:][host:]ctr[/proto]>',
      'publish a container port on the host (bridge network; repeatable)',
      collect,
      [],
    )
    .option('-P, --publish-all', 'publish every port the image exposes on free host ports')
    .option('-d, --detach', 'run in the background and print the container ID')
    .option('--name <name>', 'name the container (a matrix adds -<platform>)')
    .option('--restart <policy>', 'only "no": polyarch has no daemon to restart containers', 'no')
    .option('-i, --interactive', 'pass stdin to the container')
    .option('-t, --tty', 'allocate a terminal (single platform, when stdin is a terminal)')
    .option('--pull <policy>', 'always, missing or never', 'missing')
    .passThroughOptions()
    .addHelpText(
      'after',
      "\nExit code: the container process's; 125 when it could not start (126 not executable, 127 not\n" +
        'found). A matrix run prefixes each output line with its platform, prints a PLATFORM EXIT\n' +
        'DURATION table and exits 1 if any platform failed. Without --rm the container is kept, as in\n' +
        'docker (ps -a, inspect, rm; its output went to the terminal, so logs has none), its changes\n' +
        'as the snapshot "container:<id>" in the state root.\n\n' +
        'With -d the container runs in the background under its own small monitor process; run\n' +
        'prints its full ID (one per platform of a matrix, named NAME-<os>-<arch> with --name) and\n' +
        'exits; see ps, logs, stop, kill, exec, wait, inspect, rm.\n\n' +
        'Published ports (-p, -P) in a matrix: one platform after the other, each publishes the same\n' +
        'host ports in turn; with --parallel or -d, the first platform takes the host ports asked for\n' +
        "and every other platform gets free ones. Each platform's ports are printed on stderr.",
    )
    .action(async (image: string, command: string[], o: RunFlags) => {
      const { UsageError, errorMessage } = await import('../../util/errors.js');
      const { formatPlatform, parsePlatformList } = await import('../../platform/index.js');
      const { parseVolume } = await import('../../exec/spec.js');
      const { parseNetworkMode, parsePublish, formatPort } = await import('../../exec/network.js');
      const network = parseNetworkMode(o.network ?? 'bridge');
      const { PolyarchError } = await import('../../util/errors.js');
      if (o.restart !== undefined && o.restart !== 'no')
        throw new PolyarchError(
          'UNSUPPORTED',
          `--restart=${o.restart} is not supported: polyarch has no daemon to restart containers (only --restart=no)`,
          { exitCode: 125 },
        );
      const publish = o.publish.map(parsePublish);
      if (o.name !== undefined) (await import('../../exec/containers.js')).checkName(o.name);
      if (network !== 'bridge' && (publish.length > 0 || o.publishAll))
        throw new PolyarchError('INVALID_ARGUMENT', `-p/-P need --network bridge (not ${network})`, {
          exitCode: 125,
        });
      if (o.detach && o.interactive)
        ctx.err.write('WARNING: -i ignored with -d: a detached container reads no input\n');
      if (!['always', 'missing', 'never'].includes(o.pull))
        throw new UsageError(`invalid --pull "${o.pull}": use always, missing or never`);
      if (o.platform !== undefined && o.allPlatforms)
        throw new UsageError('--platform and --all-platforms cannot be used together');
      let platforms: string[] | undefined;
      try {
        // Normalised, duplicates dropped, `local` = this host (buildx's list rules).
        if (o.platform !== undefined) platforms = parsePlatformList(o.platform).map((p) => formatPlatform(p));
      } catch (err) {
        throw new UsageError(errorMessage(err));
      }
      if (
        (publish.length > 0 || o.publishAll) &&
        !o.detach &&
        !o.parallel &&
        (o.allPlatforms || (platforms?.length ?? 0) > 1)
      )
        ctx.err.write(
          'note: the platforms run one after the other, each publishing the same host ports in turn\n',
        );
      const env = [...(await readEnvFiles(o.envFile)), ...o.env].flatMap((kv) => {
        if (kv.includes('=')) return [kv];
        const v = ctx.env[kv]; // docker: a bare K takes the caller's value, or is dropped
        return v === undefined ? [] : [`${kv}=${v}`];
      });
      const mounts = o.volume.map(parseVolume);

      const { runImage, formatSummary } = await import('../../exec/container.js');
      const { ProgressWriter } = await import('../../progress/writer.js');
      const { lazySink } = await import('../../progress/lazy.js');
      // Pull progress (only when the image must be fetched); closed before the container's output.
      // The renderer is loaded only if there is something to show.
      const progress = new ProgressWriter(
        lazySink(async () =>
          (await import('../ui/choose.js')).chooseRenderer(undefined, {
            stream: ctx.err,
            isTTY: ctx.isTTY,
            env: ctx.env,
            phase: 'Pulling',
          }),
        ),
      );
      let closed: Promise<void> | undefined;
      const done = () => (closed ??= progress.close());
      const real = ctx.out === process.stdout && ctx.err === process.stderr;
      const tty = Boolean(o.tty && real && process.stdin.isTTY && !o.detach);
      if (o.tty && o.detach)
        ctx.err.write('WARNING: -t ignored with -d: use `polyarch exec -it` for a terminal\n');
      else if (o.tty && !tty) ctx.err.write('WARNING: -t ignored: stdin is not a terminal\n');
      try {
        const r = await runImage({
          image,
          ...(platforms ? { platforms } : {}),
          allPlatforms: Boolean(o.allPlatforms),
          pull: o.pull as 'always' | 'missing' | 'never',
          args: command,
          ...(o.entrypoint !== undefined ? { entrypoint: o.entrypoint } : {}),
          env,
          ...(o.workdir ? { workingDir: o.workdir } : {}),
          ...(o.user !== undefined ? { user: o.user } : {}),
          network,
          publish,
          publishAll: Boolean(o.publishAll),
          detach: Boolean(o.detach),
          ...(o.name !== undefined ? { name: o.name } : {}),
          onPublish: (platform, ports) => {
            const what = platforms && platforms.length > 1 ? `${platform}: ` : '';
            ctx.err.write(`${what}published ${ports.map(formatPort).join(', ')}\n`);
          },
          mounts,
          terminal: tty,
          rm: Boolean(o.rm),
          parallel: Boolean(o.parallel),
          stdin: o.interactive && !o.detach ? 'inherit' : 'ignore',
          stdout: real ? 'inherit' : textSink(ctx.out),
          stderr: real ? 'inherit' : textSink(ctx.err),
          processEnv: ctx.env,
          progress,
          warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
          onStart: () => {
            void done();
          },
        });
        if (o.detach) {
          // docker run -d prints the full id; a matrix prints one per platform, in order.
          for (const res of r.results) if (!res.error) ctx.out.write(`${res.containerId}\n`);
          ctx.exitCode = r.results.some((res) => res.error) ? 125 : 0;
          return;
        }
        if (r.matrix) ctx.out.write(`\n${formatSummary(r.results)}`);
        ctx.exitCode = r.exitCode;
      } finally {
        await done();
      }
    });
}

/** `K=V` lines of env files (docker's format: `#` comments and blank lines skipped, bare K allowed). */
async function readEnvFiles(files: string[]): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  const { PolyarchError, errorMessage } = await import('../../util/errors.js');
  const out: string[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (err) {
      throw new PolyarchError('NOT_FOUND', `reading env file ${f}: ${errorMessage(err)}`, { cause: err });
    }
    for (const line of text.split(/\r?\n/)) {
      const t = line.trimStart();
      if (t === '' || t.startsWith('#')) continue;
      out.push(t);
    }
  }
  return out;
}
