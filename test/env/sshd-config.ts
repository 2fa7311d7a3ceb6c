/**
 * The files a test sshd needs: a host key and a client key made here, the client key
 * authorized for root, and an sshd_config on a free 127.0.0.1 port (keys only, no PAM) whose
 * sessions get `setEnv`. Shared by the BuildKit ssh:// endpoints (buildkit.ts) and the ssh
 * driver's hosts (sshnode.ts); each writes its own client ssh_config.
 *
 *   const { port, path } = await writeSshdFiles(dir, 'PATH=/usr/bin:/bin');
 *   spawn('/usr/sbin/sshd', ['-D', '-e', '-f', path('sshd_config')]);
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, run } from './proc.js';

export async function writeSshdFiles(
  dir: string,
  setEnv: string,
): Promise<{ port: number; path: (name: string) => string }> {
  await mkdir(dir, { recursive: true });
  await mkdir('/run/sshd', { recursive: true });
  const p = (n: string) => join(dir, n);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', p('host_key')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', p('client_key')]);
  await writeFile(p('authorized_keys'), await readFile(p('client_key.pub')));
  const port = await freePort();
  await writeFile(
    p('sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${p('host_key')}`,
      `AuthorizedKeysFile ${p('authorized_keys')}`,
      `PidFile ${p('sshd.pid')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      `SetEnv ${setEnv}`,
      '',
    ].join('\n'),
  );
  return { port, path: p };
}
