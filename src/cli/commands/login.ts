import type { Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import type { CliContext } from '../context.js';

/** docker login's argument forms: `host`, `https://host/`, `https://index.docker.io/v1/`. */
export function registryHost(arg: string | undefined): string {
  if (!arg) return 'docker.io';
  const h = arg.replace(/^https?:\/\//, '').split('/')[0] ?? '';
  if (h === '') throw new UsageError(`invalid registry "${arg}"`);
  return h === 'index.docker.io' || h === 'registry-1.docker.io' ? 'docker.io' : h;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('login')
    .description("Log in to a registry (checks the credentials, then stores them in Docker's config.json)")
    .argument('[registry]', 'registry host (default: docker.io)')
    .option('-u, --username <user>', 'user name')
    .option('-p, --password <password>', 'password (insecure: prefer --password-stdin)')
    .option('--password-stdin', 'read the password from stdin')
    .action(
      async (
        registry: string | undefined,
        o: { username?: string; password?: string; passwordStdin?: boolean },
      ) => {
        const host = registryHost(registry);
        if (o.password !== undefined && o.passwordStdin)
          throw new UsageError('--password and --password-stdin are mutually exclusive');
        if (!o.username) throw new UsageError('login needs --username (-u)');
        let password = o.password;
        if (o.passwordStdin) password = await readStdin();
        else if (password !== undefined)
          ctx.err.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
        if (!password) throw new UsageError('login needs a password: --password-stdin or -p');
        const { RegistryClient } = await import('../../registry/client.js');
        const { loadRegistryConfig } = await import('../../registry/config.js');
        const { storeCredentials } = await import('../../registry/credentials.js');
        const { PolyarchError, errorMessage } = await import('../../util/errors.js');
        const creds = { username: o.username, password };
        const client = new RegistryClient({
          config: await loadRegistryConfig(ctx.env),
          env: ctx.env,
          credentials: async () => creds,
        });
        try {
          await client.ping(host);
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === 'UNAUTHORIZED')
            throw new PolyarchError(
              'UNAUTHORIZED',
              `login to ${host} failed: the registry refused the credentials of user "${o.username}"`,
            );
          throw new PolyarchError(code ?? 'LOGIN', `login to ${host} failed: ${errorMessage(err)}`, {
            cause: err,
          });
        } finally {
          await client.close();
        }
        await storeCredentials(host, creds, ctx.env);
        ctx.out.write('Login Succeeded\n');
      },
    );
}
