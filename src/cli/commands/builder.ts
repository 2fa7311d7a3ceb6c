/**
 * `polyarch builder create|use|ls|inspect|rm|prune|du|build` (docker builder's grammar) and
 * `polyarch buildx …` (the same, plus `imagetools`, so a buildx user's `polyarch buildx build …`
 * works): one home for builder commands now that top-level `rm`/`inspect` mean containers.
 * Top-level `create`, `use`, `ls`, `build`, `prune` and `du` keep working. The command modules
 * are thin (they load the library inside their actions), so importing them here is cheap.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import * as build from './build.js';
import * as create from './create.js';
import * as du from './du.js';
import * as history from './history.js';
import * as imagetools from './imagetools.js';
import * as inspect from './inspect.js';
import * as ls from './ls.js';
import * as prune from './prune.js';
import * as rm from './rm.js';
import * as use from './use.js';

const BUILDER = [build, create, use, ls, inspect, rm, prune, du];

export function register(program: Command, ctx: CliContext): void {
  const builder = program
    .command('builder')
    .description('Manage builders: create, use, ls, inspect, rm, prune, du (and build)');
  for (const m of BUILDER) m.register(builder, ctx);
  const buildx = program
    .command('buildx')
    .description('docker buildx: build, builders, prune, du, imagetools and history');
  for (const m of [...BUILDER, imagetools, history]) m.register(buildx, ctx);
}
