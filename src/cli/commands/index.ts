/**
 * Every top-level command, in the order `polyarch --help` lists them: the names each module
 * registers and how to load it. A command module declares its flags when loaded and imports
 * the library lazily inside its action. The CLI loads only the module argv names (and all of
 * them for help or an unknown word), which keeps start-up short.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export type Register = (program: Command, ctx: CliContext) => void;

export interface CommandModule {
  /** Top-level command names (and aliases) the module registers. */
  names: readonly string[];
  load: () => Promise<{ register: Register }>;
}

export const commands: readonly CommandModule[] = [
  { names: ['build'], load: () => import('./build.js') },
  { names: ['run'], load: () => import('./run.js') },
  { names: ['ps'], load: () => import('./ps.js') },
  { names: ['logs'], load: () => import('./logs.js') },
  { names: ['stop'], load: () => import('./stop.js') },
  { names: ['kill'], load: () => import('./kill.js') },
  { names: ['exec'], load: () => import('./exec.js') },
  { names: ['wait'], load: () => import('./wait.js') },
  { names: ['inspect'], load: () => import('./container-inspect.js') },
  { names: ['rm'], load: () => import('./container-rm.js') },
  { names: ['container'], load: () => import('./container.js') },
  { names: ['imagetools'], load: () => import('./imagetools.js') },
  { names: ['manifest'], load: () => import('./manifest.js') },
  { names: ['pull'], load: () => import('./pull.js') },
  { names: ['push'], load: () => import('./push.js') },
  { names: ['images', 'image'], load: () => import('./images.js') },
  { names: ['tag'], load: () => import('./tag.js') },
  { names: ['rmi'], load: () => import('./rmi.js') },
  { names: ['save'], load: () => import('./save.js') },
  { names: ['load'], load: () => import('./load.js') },
  { names: ['import'], load: () => import('./import.js') },
  { names: ['history'], load: () => import('./history.js') },
  { names: ['prune'], load: () => import('./prune.js') },
  { names: ['du'], load: () => import('./du.js') },
  { names: ['login'], load: () => import('./login.js') },
  { names: ['logout'], load: () => import('./logout.js') },
  { names: ['binfmt'], load: () => import('./binfmt.js') },
  { names: ['create'], load: () => import('./create.js') },
  { names: ['use'], load: () => import('./use.js') },
  { names: ['ls'], load: () => import('./ls.js') },
  { names: ['builder', 'buildx'], load: () => import('./builder.js') },
  { names: ['compose'], load: () => import('./compose.js') },
  { names: ['version'], load: () => import('./version.js') },
  // The ssh driver's node side (hidden from help).
  { names: ['__node'], load: () => import('./node.js') },
];
