/**
 * Every top-level command, in the order `polyarch --help` lists them. A command module
 * declares its flags eagerly (so `--help` works everywhere) and imports the library
 * lazily inside its action, which keeps start-up fast for `polyarch version`.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import * as binfmt from './binfmt.js';
import * as build from './build.js';
import * as compose from './compose.js';
import * as create from './create.js';
import * as du from './du.js';
import * as images from './images.js';
import * as imagetools from './imagetools.js';
import * as importCmd from './import.js';
import * as inspect from './inspect.js';
import * as load from './load.js';
import * as login from './login.js';
import * as logout from './logout.js';
import * as ls from './ls.js';
import * as manifest from './manifest.js';
import * as prune from './prune.js';
import * as pull from './pull.js';
import * as push from './push.js';
import * as rm from './rm.js';
import * as rmi from './rmi.js';
import * as run from './run.js';
import * as save from './save.js';
import * as tag from './tag.js';
import * as use from './use.js';
import * as version from './version.js';

export type Register = (program: Command, ctx: CliContext) => void;

export const commands: Register[] = [
  build.register,
  run.register,
  imagetools.register,
  manifest.register,
  pull.register,
  push.register,
  images.register,
  tag.register,
  rmi.register,
  save.register,
  load.register,
  importCmd.register,
  prune.register,
  du.register,
  login.register,
  logout.register,
  binfmt.register,
  create.register,
  use.register,
  ls.register,
  inspect.register,
  rm.register,
  compose.register,
  version.register,
];
