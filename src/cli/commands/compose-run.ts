/**
 * `polyarch compose up [-d] | down | ps [-a] | logs [-f] | push | config [SERVICE...]`: the
 * services of a compose project as containers (src/compose/up.ts), pushed to their registries,
 * or the resolved model printed. `-f`/`-p`/`--env-file` as for `compose build`.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

/** The `compose` group's own flags, shared by every sub-command. */
export interface ComposeFlags {
  file: string[];
  projectName?: string;
  projectDirectory?: string;
  envFile?: string;
}

/** The project those flags name, loaded (every compose sub-command starts here). */
export async function loadComposeProject(top: ComposeFlags, ctx: CliContext) {
  const lib = await import('../../compose/index.js');
  return lib.loadProject({
    files: top.file,
    ...(top.projectName !== undefined ? { projectName: top.projectName } : {}),
    ...(top.projectDirectory !== undefined ? { projectDirectory: top.projectDirectory } : {}),
    ...(top.envFile !== undefined ? { envFile: top.envFile } : {}),
    env: ctx.env,
    warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
  });
}

async function load(cmd: Command, ctx: CliContext) {
  const lib = await import('../../compose/index.js');
  const project = await loadComposeProject(cmd.parent!.opts() as ComposeFlags, ctx);
  const { stateRoot } = await import('../../content/paths.js');
  return { lib, project, root: stateRoot(ctx.env) };
}

export function registerComposeRun(compose: Command, ctx: CliContext): void {
  compose
    .command('up')
    .description('Create and start containers for the services (each on its platform:)')
    .argument('[services...]', 'services to start (with what they depend on; default all)')
    .option('-d, --detach', 'run in the background (polyarch needs it: there is no attached mode yet)')
    .action(async (services: string[], flags: { detach?: boolean }, cmd: Command) => {
      const { UsageError } = await import('../../util/errors.js');
      if (!flags.detach)
        throw new UsageError('compose up runs detached only: use compose up -d, then compose logs -f');
      const { lib, project, root } = await load(cmd, ctx);
      await lib.composeUp(project, {
        root,
        env: ctx.env,
        services,
        warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
        onStart: (_svc, c) => ctx.err.write(` Container ${c.name}  Started (${c.platform})\n`),
      });
    });

  compose
    .command('down')
    .description("Stop and remove the project's containers and network")
    .option('-t, --timeout <seconds>', 'shutdown timeout in seconds', '10')
    .action(async (flags: { timeout: string }, cmd: Command) => {
      const { UsageError } = await import('../../util/errors.js');
      if (!/^\d+$/.test(flags.timeout))
        throw new UsageError(`invalid --timeout "${flags.timeout}": use whole seconds`);
      const { lib, project, root } = await load(cmd, ctx);
      await lib.composeDown(project, {
        root,
        timeoutS: Number(flags.timeout),
        onRemoved: (name) => ctx.err.write(` Container ${name}  Removed\n`),
      });
    });

  compose
    .command('ps')
    .description("List the project's containers")
    .option('-a, --all', 'show stopped containers too')
    .option('-q, --quiet', 'only display IDs')
    .action(async (flags: { all?: boolean; quiet?: boolean }, cmd: Command) => {
      const { lib, project, root } = await load(cmd, ctx);
      const { isRunning, psRow } = await import('../../exec/containers.js');
      const { formatTable } = await import('./images.js');
      const cs = (await lib.projectContainers(root, project.name)).filter((c) => flags.all || isRunning(c));
      if (flags.quiet) {
        ctx.out.write(cs.map((c) => `${c.Id}\n`).join(''));
        return;
      }
      ctx.out.write(
        formatTable([
          ['NAME', 'IMAGE', 'PLATFORM', 'COMMAND', 'SERVICE', 'CREATED', 'STATUS', 'PORTS'],
          ...cs.map((c) => {
            const r = psRow(c);
            return [
              r.Names,
              r.Image,
              r.Platform,
              r.Command,
              c.Config.Labels?.[lib.SERVICE_LABEL] ?? '',
              r.RunningFor,
              r.Status,
              r.Ports,
            ];
          }),
        ]),
      );
    });

  compose
    .command('logs')
    .description("Show the services' output, each line prefixed with its container")
    .argument('[services...]', 'services (default all)')
    .option('-f, --follow', 'follow log output')
    .option('-n, --tail <n>', 'number of lines to show from the end of each log ("all")', 'all')
    .action(async (services: string[], flags: { follow?: boolean; tail: string }, cmd: Command) => {
      const { UsageError } = await import('../../util/errors.js');
      if (flags.tail !== 'all' && !/^\d+$/.test(flags.tail))
        throw new UsageError(`invalid --tail "${flags.tail}": use a number or all`);
      const { lib, project, root } = await load(cmd, ctx);
      for (const s of services) if (!(s in project.services)) throw new UsageError(`no such service: ${s}`);
      const { readLogs } = await import('../../exec/logs.js');
      const cs = (await lib.projectContainers(root, project.name))
        .filter((c) => services.length === 0 || services.includes(c.Config.Labels?.[lib.SERVICE_LABEL] ?? ''))
        .reverse();
      const width = Math.max(0, ...cs.map((c) => c.Name.length - 1));
      await Promise.all(
        cs.map((c) =>
          readLogs(root, c, {
            ...(flags.tail !== 'all' ? { tail: Number(flags.tail) } : {}),
            follow: Boolean(flags.follow),
            write: (e) =>
              ctx.out.write(
                `${c.Name.slice(1).padEnd(width)}  | ${e.log.endsWith('\n') ? e.log : `${e.log}\n`}`,
              ),
          }),
        ),
      );
    });

  compose
    .command('push')
    .description("Push the services' images to their registries")
    .argument('[services...]', 'services (default every one with an image: name or a build section)')
    .option('-q, --quiet', 'print nothing but errors')
    .action(async (services: string[], flags: { quiet?: boolean }, cmd: Command) => {
      const { lib, project } = await load(cmd, ctx);
      const { UsageError } = await import('../../util/errors.js');
      for (const s of services) if (!(s in project.services)) throw new UsageError(`no such service: ${s}`);
      const { push } = await import('../../image/push.js');
      const { ContentStore, storeDir } = await import('../../content/index.js');
      const store = await ContentStore.open(storeDir(ctx.env));
      const names = services.length > 0 ? services : Object.keys(project.services);
      for (const s of names) {
        const svc = project.services[s]!;
        const image = svc.image ?? (svc.build ? lib.defaultImageName(project.name, s) : undefined);
        if (image === undefined) continue;
        const r = await push(image, { store, env: ctx.env, warn: (m) => ctx.err.write(`WARNING: ${m}\n`) });
        if (!flags.quiet) ctx.err.write(` Service ${s}  Pushed  ${r.name}@${r.digest}\n`);
      }
    });

  compose
    .command('config')
    .description('Print the resolved compose model (files merged, .env interpolated), as YAML')
    .option('--services', 'print the service names, one per line')
    .action(async (flags: { services?: boolean }, cmd: Command) => {
      const { project } = await load(cmd, ctx);
      if (flags.services) {
        ctx.out.write(
          Object.keys(project.services)
            .map((s) => `${s}\n`)
            .join(''),
        );
        return;
      }
      const { stringify } = await import('yaml');
      const model: Record<string, unknown> = { name: project.name, services: project.services };
      if (Object.keys(project.secrets).length > 0) model.secrets = project.secrets;
      ctx.out.write(stringify(model));
    });
}
