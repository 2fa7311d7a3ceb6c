/**
 * Builder instance operations, the library behind `create`, `use`, `ls`, `inspect`, `rm`
 * and the `--builder` flag of `build`.
 *
 *   const b = await createBuilder({ name: 'multi', platforms: ['linux/arm64'], use: true });
 *   const current = await resolveBuilder(flags.builder);   // --builder, env, current, default
 *   const platforms = await builderPlatforms(current);      // what it can build, pinned first
 *   const states = await nodeStates(current);               // per node: status, platforms, version
 *
 * Every operation takes `env` (default `process.env`): `$POLYARCH_ROOT` selects the state
 * root, `$POLYARCH_BUILDER` / `$BUILDX_BUILDER` the builder when none is named.
 */
import {
  formatPlatform,
  newMatcher,
  type Platform,
  type PlatformLike,
  parsePlatformList,
} from '../platform/index.js';
import { PolyarchError, UsageError } from '../util/errors.js';
import { driverFor, mergePlatforms } from './driver.js';
import { generateName } from './names.js';
import { checkRemoteDriverOpts } from './remote/driver.js';
import { checkSshDriverOpts } from './ssh/driver.js';
import { BuilderStore, validateName } from './store.js';
import {
  type Builder,
  type BuilderNode,
  DEFAULT_BUILDER,
  DRIVER_NAMES,
  type DriverName,
  isDriverName,
  type NodeState,
  nodeDriver,
} from './types.js';

export interface StoreOptions {
  /** Environment for `$POLYARCH_ROOT` and the builder variables. Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
}

export interface CreateOptions extends StoreOptions {
  /** Builder name. Default: a generated `adjective_noun`. */
  name?: string;
  /** `local` or `ssh`. Default: `local` for a new builder, the builder's own driver on --append. */
  driver?: string;
  /** `--platform` values (each may be a comma-separated list), pinned on the node. Default: none. */
  platforms?: readonly string[];
  /** Add a node to an existing builder instead of failing because it exists. */
  append?: boolean;
  /** Node name. Default: `<builder><index>`. Naming an existing node changes that node. */
  node?: string;
  /** The node's endpoint. Default: the driver's (`local`); remote and ssh require one. */
  endpoint?: string;
  /** `--driver-opt` key=value pairs (remote: cacert, cert, key, servername; ssh: key, polyarch, root). */
  driverOpts?: Readonly<Record<string, string>>;
  /** Make the builder the current one. */
  use?: boolean;
  /** Reach every node after saving (an unreachable node fails the call; the builder stays). */
  bootstrap?: boolean;
  /** Clock for `lastActivity` (tests). Default: now. */
  now?: Date;
}

function parseDriver(name: string): DriverName {
  if (!isDriverName(name))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `unknown driver "${name}": want one of ${DRIVER_NAMES.join(', ')}`,
    );
  return name;
}

function notFound(name: string): PolyarchError {
  return new PolyarchError('NOT_FOUND', `no builder "${name}" found`);
}

/** Creates a builder, or adds/changes a node of an existing one (buildx create's rules). */
export async function createBuilder(opts: CreateOptions = {}): Promise<Builder> {
  const store = BuilderStore.open(opts.env);
  const wantDriver = opts.driver === undefined ? undefined : parseDriver(opts.driver);
  if (opts.name !== undefined) {
    if (opts.name === DEFAULT_BUILDER)
      throw new UsageError('default is a reserved name and cannot be used to create a builder');
    validateName(opts.name);
  }
  if (opts.node !== undefined) validateName(opts.node, 'node name');
  // Parse platforms before touching the store, so a typo changes nothing.
  const pinned: Platform[] =
    opts.platforms && opts.platforms.length > 0 ? parsePlatformList(opts.platforms) : [];
  const builder = await store.withLock(async () => {
    let name = opts.name;
    if (name === undefined) {
      const taken = new Set((await store.list()).map((b) => b.name));
      name = generateName((n) => taken.has(n));
    }
    const existing = await store.get(name);
    if (existing && !opts.append && opts.node === undefined)
      throw new PolyarchError(
        'ALREADY_EXISTS',
        `existing instance for "${name}" but no append mode, specify the node name to make changes for existing instances`,
      );
    const nodes = [...(existing?.nodes ?? [])];
    const index = opts.node === undefined ? -1 : nodes.findIndex((n) => n.name === opts.node);
    const old = index >= 0 ? nodes[index] : undefined;
    const driverName =
      wantDriver ?? (old && existing ? nodeDriver(existing, old) : undefined) ?? existing?.driver ?? 'local';
    const driver = driverFor(driverName);
    const rawEndpoint = opts.endpoint ?? old?.endpoint ?? driver.defaultEndpoint;
    if (rawEndpoint === undefined)
      throw new UsageError(`the ${driverName} driver needs an endpoint argument, e.g. ssh://user@host`);
    const endpoint = driver.checkEndpoint(rawEndpoint);
    const dup = nodes.find((n, i) => i !== index && n.endpoint === endpoint);
    if (dup)
      throw new PolyarchError(
        'ALREADY_EXISTS',
        `invalid duplicate endpoint ${endpoint}: node ${dup.name} of builder "${name}" already uses it`,
      );
    let nodeName = opts.node;
    if (nodeName === undefined) {
      const names = new Set(nodes.map((n) => n.name));
      for (let i = nodes.length; nodeName === undefined || names.has(nodeName); i++) nodeName = `${name}${i}`;
    }
    const driverOpts =
      opts.driverOpts && Object.keys(opts.driverOpts).length > 0
        ? driverName === 'local'
          ? (() => {
              throw new UsageError('the local driver takes no --driver-opt');
            })()
          : driverName === 'ssh'
            ? checkSshDriverOpts(opts.driverOpts)
            : checkRemoteDriverOpts(opts.driverOpts)
        : undefined;
    const { driver: _oldDriver, ...oldRest } = old ?? {};
    const node: BuilderNode = {
      ...oldRest,
      ...(driverOpts ? { driverOpts } : {}),
      ...(existing && existing.driver !== driverName ? { driver: driverName } : {}),
      name: nodeName,
      endpoint,
      // Changing a node without --platform keeps its pinned platforms (buildx does too).
      platforms: opts.platforms && opts.platforms.length > 0 ? pinned : (old?.platforms ?? []),
    };
    if (old) nodes[index] = node;
    else nodes.push(node);
    const b: Builder = {
      name,
      driver: existing?.driver ?? driverName,
      nodes,
      dynamic: false,
      lastActivity: (opts.now ?? new Date()).toISOString(),
    };
    await store.put(b);
    if (opts.use) await store.setCurrent(name);
    return b;
  });
  if (opts.bootstrap) await bootstrapBuilder(builder);
  return builder;
}

/**
 * Removes node `node` from builder `name` (buildx `create --leave --node`). The last node
 * cannot leave: remove the builder instead.
 */
export async function leaveBuilder(
  name: string,
  node: string,
  opts: StoreOptions & { now?: Date } = {},
): Promise<Builder> {
  if (name === DEFAULT_BUILDER) throw new UsageError('default is a reserved name and cannot be changed');
  validateName(name);
  const store = BuilderStore.open(opts.env);
  return store.withLock(async () => {
    const b = await store.get(name);
    if (!b) throw notFound(name);
    if (!b.nodes.some((n) => n.name === node))
      throw new PolyarchError('NOT_FOUND', `node ${node} not found in builder "${name}"`);
    if (b.nodes.length === 1)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `node ${node} is the last node of builder "${name}": remove the builder instead (polyarch rm ${name})`,
      );
    const next: Builder = {
      ...b,
      nodes: b.nodes.filter((n) => n.name !== node),
      lastActivity: (opts.now ?? new Date()).toISOString(),
    };
    await store.put(next);
    return next;
  });
}

/** Makes `name` the current builder (it must exist; `default` always does). */
export async function useBuilder(name: string, opts: StoreOptions = {}): Promise<Builder> {
  const store = BuilderStore.open(opts.env);
  const b = await store.get(name);
  if (!b) throw notFound(name);
  await store.setCurrent(name === DEFAULT_BUILDER ? undefined : name);
  return b;
}

/** Removes a builder; `default` cannot be removed. Removing the current one makes `default` current. */
export async function removeBuilder(name: string, opts: StoreOptions = {}): Promise<void> {
  if (name === DEFAULT_BUILDER)
    throw new PolyarchError('INVALID_ARGUMENT', 'default is a reserved name and cannot be removed');
  const store = BuilderStore.open(opts.env);
  validateName(name);
  const removed = await store.withLock(() => store.remove(name));
  if (!removed) throw notFound(name);
}

/**
 * Removes every builder with no running node (buildx `rm --all-inactive`); `default` is
 * kept. A node whose driver fails to answer counts as not running. Returns the names removed.
 */
export async function removeInactiveBuilders(opts: StoreOptions = {}): Promise<string[]> {
  const store = BuilderStore.open(opts.env);
  const removed: string[] = [];
  for (const b of await store.list()) {
    if (b.name === DEFAULT_BUILDER) continue;
    const states = await nodeStates(b);
    if (states.some((s) => s.info?.status === 'running')) continue;
    if (await store.withLock(() => store.remove(b.name))) removed.push(b.name);
  }
  return removed;
}

/** Every builder (stored ones by name, then `default`) and the name of the current one. */
export async function listBuilders(
  opts: StoreOptions & { onError?: (name: string, err: Error) => void } = {},
): Promise<{ builders: Builder[]; current: string }> {
  const store = BuilderStore.open(opts.env);
  const builders = await store.list(opts.onError);
  const cur = await store.currentName();
  const current = cur !== undefined && builders.some((b) => b.name === cur) ? cur : DEFAULT_BUILDER;
  return { builders, current };
}

/**
 * The builder to use: `name` (from `--builder`), else `$POLYARCH_BUILDER`, else
 * `$BUILDX_BUILDER`, else the current builder, else `default`. A builder named explicitly
 * (flag or variable) must exist; a `current` file naming a removed builder falls back to default.
 */
export async function resolveBuilder(name?: string, opts: StoreOptions = {}): Promise<Builder> {
  const env = opts.env ?? process.env;
  const store = BuilderStore.open(env);
  const explicit = name || env.POLYARCH_BUILDER || env.BUILDX_BUILDER || undefined;
  if (explicit !== undefined) {
    validateName(explicit);
    const b = await store.get(explicit);
    if (!b) throw notFound(explicit);
    return b;
  }
  const cur = await store.currentName();
  return (
    (cur !== undefined ? await store.get(cur).catch(() => undefined) : undefined) ??
    (await store.get(DEFAULT_BUILDER))!
  );
}

/** Asks each node's driver for its state (`bootstrap` starts nodes first), in parallel; errors are kept per node. */
export async function nodeStates(b: Builder, opts: { bootstrap?: boolean } = {}): Promise<NodeState[]> {
  return Promise.all(
    b.nodes.map(async (node): Promise<NodeState> => {
      const driver = driverFor(nodeDriver(b, node));
      try {
        return { node, info: await (opts.bootstrap ? driver.bootstrap(node) : driver.info(node)) };
      } catch (err) {
        return { node, error: err instanceof Error ? err : new Error(String(err)) };
      }
    }),
  );
}

/** Bootstraps every node; the first failure is thrown, naming the builder and node. */
export async function bootstrapBuilder(b: Builder): Promise<NodeState[]> {
  const states = await nodeStates(b, { bootstrap: true });
  const failed = states.find((s) => s.error);
  if (failed?.error) {
    const e = failed.error;
    throw new PolyarchError(
      e instanceof PolyarchError ? e.code : 'IO',
      `bootstrapping builder ${b.name}: ${e.message}`,
      { cause: e },
    );
  }
  return states;
}

/**
 * What `b` can build: every node's platforms (pinned first, node by node), duplicates
 * dropped. Nodes are bootstrapped; one that cannot be reached fails the call.
 */
export async function builderPlatforms(b: Builder): Promise<Platform[]> {
  const states = await bootstrapBuilder(b);
  return states.reduce<Platform[]>((acc, s) => mergePlatforms(acc, s.info?.platforms ?? []), []);
}

/**
 * The node that should build `platform` (buildx's choice): the first node that pinned it,
 * else the first node that can build it, else undefined. Nodes with errors are skipped.
 */
export function pickNode(states: readonly NodeState[], platform: PlatformLike): NodeState | undefined {
  const m = newMatcher(platform);
  return (
    states.find((s) => s.info && s.node.platforms.some((p) => m.match(p))) ??
    states.find((s) => s.info?.platforms.some((p) => m.match(p)))
  );
}

/**
 * Records that `b` was just used (the `Last Activity:` of inspect; buildx updates it on
 * every build). `default` has none. Returns the updated builder.
 */
export async function touchBuilder(b: Builder, opts: StoreOptions & { now?: Date } = {}): Promise<Builder> {
  if (b.name === DEFAULT_BUILDER) return b;
  const store = BuilderStore.open(opts.env);
  return store.withLock(async () => {
    // Re-read under the lock so a concurrent `create --append` is not undone.
    const current = await store.get(b.name);
    if (!current) throw notFound(b.name);
    const next: Builder = { ...current, lastActivity: (opts.now ?? new Date()).toISOString() };
    await store.put(next);
    return next;
  });
}

/** Each platform formatted, pinned ones marked `*` as buildx does (`linux/arm64*`). */
export function platformLabels(node: BuilderNode, platforms: readonly Platform[]): string[] {
  const pinned = new Set(node.platforms.map((p) => formatPlatform(p)));
  return platforms.map((p) => formatPlatform(p)).map((p) => (pinned.has(p) ? `${p}*` : p));
}

/** `linux/arm64*, linux/amd64, ...`: every platform, pinned ones marked (inspect's Platforms:). */
export function formatNodePlatforms(node: BuilderNode, platforms: readonly Platform[]): string {
  return platformLabels(node, platforms).join(', ');
}
