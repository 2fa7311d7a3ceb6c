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

/** Asks on the terminal (stderr); with `secret` the typed characters are not echoed. */
async function prompt(question: string, secret: boolean): Promise<string> {
  const { createInterface } = await import('node:readline');
  const { Writable } = await import('node:stream');
  let muted = false;
  const output = new Writable({
    write(chunk, _enc, cb) {
      if (!muted) process.stderr.write(chunk);
      cb();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  return new Promise((resolve) => {
    rl.question(question, (answer) => {
      rl.close();
      if (secret) process.stderr.write('\n');
      resolve(answer.trim());
    });
    muted = secret;
  });
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
        const interactive = Boolean(process.stdin.isTTY) && !o.passwordStdin;
        let username = o.username;
        if (!username && interactive) username = await prompt('Username: ', false);
        if (!username) throw new UsageError('login needs --username (-u)');
        let password = o.password;
        if (o.passwordStdin) password = await readStdin();
        else if (password !== undefined)
          ctx.err.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
        else if (interactive) password = await prompt('Password: ', true);
        if (!password)
          throw new UsageError('login needs a password: --password-stdin, -p, or a terminal to ask on');
        const { RegistryClient } = await import('../../registry/client.js');
        const { loadRegistryConfig } = await import('../../registry/config.js');
        const { storeCredentials } = await import('../../registry/credentials.js');
        const { PolyarchError, errorMessage } = await import('../../util/errors.js');
        const creds = { username, password };
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
              `login to ${host} failed: the registry refused the credentials of user "${username}"`,
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
