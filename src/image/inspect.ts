/**
 * `imagetools inspect` and `manifest inspect`: what a registry holds for a reference, in
 * buildx's and docker's output formats.
 *
 *   await inspectImage('127.0.0.1:5000/app:1', { client });                    // human text
 *   await inspectImage(ref, { client, raw: true });                          // registry bytes
 *   await inspectImage(ref, { client, format: '{{json .Manifest}}' });       // template
 *   await manifestInspect(ref, { client, verbose: false });                  // docker JSON
 */
import type { Descriptor, ImageConfig } from '../oci/index.js';
import { isIndexType, parseImageConfig, parseImageDocument } from '../oci/index.js';
import type { FetchedManifest, RegistryClient } from '../registry/client.js';
import { formatReference, parseReference, type Reference, withDigest } from '../oci/reference.js';
import { UsageError } from '../util/errors.js';
import { GO_JSON, GO_STRING, GO_TYPE, goJson as marshal } from '../util/gofmt.js';
import { parseTemplate } from '../util/template.js';
import { type PlatformAttestations, provenanceStub, sbomStub } from '../attest/read.js';
import { descriptorPlatform, isAttestation, openClient, withContext } from './remote.js';
import { formatPlatform } from '../platform/index.js';

export interface InspectOptions {
  client?: RegistryClient;
  /** Print the registry's bytes unchanged. */
  raw?: boolean;
  /** `json`, or a Go-template subset: `{{json .Manifest}}`, `{{json .Image}}`, `{{.Name}}`, `{{.Manifest.Digest}}`. */
  format?: string;
  env?: NodeJS.ProcessEnv;
}

/** Returns what to print (text ends with a newline, except --raw which is the exact bytes). */
export async function inspectImage(input: string, opts: InspectOptions = {}): Promise<string | Buffer> {
  if (opts.raw && opts.format) throw new UsageError('--format and --raw cannot be used together');
  const ref = parseReference(input);
  // A bad template fails before any network traffic.
  const tmpl = opts.format && opts.format !== 'json' ? parseTemplate(opts.format, BUILDX_FUNCS) : undefined;
  const client = opts.client ?? (await openClient({ env: opts.env }));
  try {
    const root = await client.getManifest(ref);
    if (opts.raw) return root.bytes;
    const format = opts.format ?? '';
    // buildx: no format, or exactly {{.Manifest}}, is the human view.
    if (format === '' || /^\{\{\s*\.Manifest\s*\}\}$/.test(format.trim())) return human(ref, root);
    // The attestations are read only when the template asks for them (more requests).
    const attestations = /\.(SBOM|Provenance)\b/.test(format);
    const data = await templateData(input, ref, root, client, attestations);
    if (format === 'json') return `${goJson(data)}\n`;
    return `${tmpl!.execute(data)}\n`;
  } catch (err) {
    throw withContext(`inspecting ${formatReference(ref)}`, err);
  } finally {
    if (!opts.client) await client.close();
  }
}

/** Go's text/tabwriter with minwidth 0, padding 1: one column, aligned per block. */
function tabBlock(lines: Array<[string, string]>): string {
  const w = Math.max(...lines.map(([c]) => c.length)) + 1;
  return lines.map(([c, rest]) => `${c.padEnd(w)}${rest}\n`).join('');
}

function human(ref: Reference, root: FetchedManifest): string {
  const doc = parseImageDocument(root.bytes, `manifest ${formatReference(ref)}`, root.mediaType);
  let out = tabBlock([
    ['Name:', formatReference(ref)],
    ['MediaType:', doc.mediaType],
    ['Digest:', root.digest],
  ]);
  if (doc.kind !== 'index' || doc.index.manifests.length === 0) return out;
  out += tabBlock([
    ['', ''],
    ['Manifests:', ''],
  ]);
  const pfx = '  ';
  let block: Array<[string, string]> = [];
  const flush = () => {
    if (block.length) out += tabBlock(block);
    block = [];
  };
  doc.index.manifests.forEach((m: Descriptor, i) => {
    if (i !== 0) block.push(['', '']);
    block.push([`${pfx}Name:`, formatReference(withDigest(ref, m.digest))]);
    block.push([`${pfx}MediaType:`, m.mediaType]);
    if (m.platform) {
      block.push([`${pfx}Platform:`, formatPlatform(descriptorPlatform(m)!)]);
      if (m.platform['os.version']) block.push([`${pfx}OSVersion:`, m.platform['os.version']]);
      if (m.platform['os.features']?.length)
        block.push([`${pfx}OSFeatures:`, m.platform['os.features'].join(', ')]);
    }
    if (m.urls?.length) block.push([`${pfx}URLs:`, m.urls.join(', ')]);
    const ann = Object.entries(m.annotations ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (ann.length) {
      block.push([`${pfx}Annotations:`, '']);
      flush();
      out += tabBlock(ann.map(([k, v]) => [`${pfx}${pfx}${k}:`, v]));
    }
  });
  flush();
  return out;
}

/** The image config in the field order of Go's ocispec Image struct. */
function goImage(c: ImageConfig): Record<string, unknown> {
  const order = [
    'created',
    'author',
    'architecture',
    'os',
    'os.version',
    'os.features',
    'variant',
    'config',
    'rootfs',
    'history',
  ];
  const o: Record<string, unknown> = {};
  const src = c as unknown as Record<string, unknown>;
  for (const k of order) if (src[k] !== undefined) o[k] = src[k];
  return o;
}

/** buildx's template functions: its `json` is json.MarshalIndent(v, "", "  "). */
const BUILDX_FUNCS = { funcs: { json: (v: unknown) => goJson(v) } };

/**
 * buildx's template input (imagetools.tplInput, or tplInputs for several platforms): Name
 * (the reference as typed), Manifest, Image (a map by platform when there are several),
 * SBOM and Provenance (empty: attestations are not decoded yet). `{{json .}}` gives
 * `name`, `manifest`, `image` as buildx's JSON tags do.
 */
function templateInput(
  name: string,
  manifest: unknown,
  image: unknown,
  several: boolean,
  attestations?: Map<string, PlatformAttestations>,
): Record<string, unknown> {
  const per = (stub: (a: PlatformAttestations | undefined) => Record<string, unknown>) => {
    if (!several) return stub(attestations ? [...attestations.values()][0] : undefined);
    // buildx: a map by platform, with an entry only where there is an attestation.
    const m = new Map<string, unknown>();
    for (const [p, a] of [...(attestations ?? [])].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
      const v = stub(a);
      if (Object.keys(v).length > 0) m.set(p, v);
    }
    return m;
  };
  return {
    [GO_TYPE]: several ? 'imagetools.tplInputs' : 'imagetools.tplInput',
    Name: name,
    Manifest: manifest,
    Image: image,
    SBOM: () => per(sbomStub),
    Provenance: () => per(provenanceStub),
    [GO_JSON]: () => ({ name, manifest, image }),
  };
}

/**
 * A descriptor whose platform looks like buildx's *ocispecs.Platform to a template: every
 * Go field present (`.Platform.Variant` is "" when unset), printed as Go prints the struct
 * (`{arm64 linux  [] v8}`), marshalled as the registry sent it.
 */
function goPlatformDescriptor(d: Descriptor): Descriptor {
  if (!d.platform) return d;
  const p = d.platform;
  const platform = {
    architecture: p.architecture,
    os: p.os,
    'os.version': p['os.version'] ?? '',
    'os.features': p['os.features'] ?? [],
    variant: p.variant ?? '',
  };
  for (const [key, value] of [
    [GO_TYPE, 'v1.Platform'],
    [GO_JSON, () => p],
    [
      GO_STRING,
      () =>
        `{${platform.architecture} ${platform.os} ${platform['os.version']} [${platform['os.features'].join(' ')}] ${platform.variant}}`,
    ],
  ] as const)
    Object.defineProperty(platform, key, { value });
  return { ...d, platform } as Descriptor;
}

async function configOf(ref: Reference, d: Descriptor, client: RegistryClient): Promise<ImageConfig> {
  const m = await client.getManifest(withDigest({ domain: ref.domain, path: ref.path }, d.digest));
  const doc = parseImageDocument(m.bytes, `manifest ${d.digest}`, m.mediaType);
  if (doc.kind !== 'manifest') throw new UsageError(`manifest ${d.digest} is a nested index`);
  const bytes = await client.fetchConfig(ref, doc.manifest.config);
  return parseImageConfig(bytes, `config ${doc.manifest.config.digest}`);
}

async function templateData(
  name: string,
  ref: Reference,
  root: FetchedManifest,
  client: RegistryClient,
  withAttestations = false,
): Promise<Record<string, unknown>> {
  const attest = withAttestations ? await import('../attest/read.js') : undefined;
  const doc = parseImageDocument(root.bytes, `manifest ${formatReference(ref)}`, root.mediaType);
  if (doc.kind === 'index') {
    const manifest = {
      schemaVersion: doc.index.schemaVersion,
      ...(doc.mediaType && isIndexType(doc.mediaType) ? { mediaType: doc.mediaType } : {}),
      digest: root.digest,
      size: root.bytes.length,
      manifests: doc.index.manifests.map(goPlatformDescriptor),
      ...(doc.index.annotations ? { annotations: doc.index.annotations } : {}),
    };
    const images = new Map<string, unknown>();
    const platforms = new Map<string, Descriptor>();
    for (const d of doc.index.manifests) {
      if (isAttestation(d) || !d.platform) continue;
      images.set(formatPlatform(descriptorPlatform(d)!), goImage(await configOf(ref, d, client)));
      platforms.set(formatPlatform(descriptorPlatform(d)!), d);
    }
    const atts = attest && (await attest.registryAttestations(client, ref, doc.index, platforms));
    // buildx: a map (keys sorted, as Go marshals maps) when the index has several platforms,
    // the config itself when one.
    if (images.size === 1) return templateInput(name, manifest, [...images.values()][0], false, atts);
    return templateInput(name, manifest, images, true, atts);
  }
  const manifest = { mediaType: doc.mediaType, digest: root.digest, size: root.bytes.length };
  const bytes = await client.fetchConfig(ref, doc.manifest.config);
  const config = parseImageConfig(bytes, `config ${doc.manifest.config.digest}`);
  const atts =
    attest &&
    (await attest.registryAttestations(
      client,
      ref,
      undefined,
      new Map([['', { mediaType: doc.mediaType, digest: root.digest, size: root.bytes.length }]]),
    ));
  return templateInput(name, manifest, goImage(config), false, atts);
}

/** JSON as Go's json.MarshalIndent(v, "", "  ") writes it (HTML-safe escapes included). */
function goJson(v: unknown): string {
  return marshal(v, { indent: '  ' });
}

/** Runs a buildx template on `data` (its `json` is indented, as buildx's). */
export function renderTemplate(format: string, data: unknown): string {
  return parseTemplate(format, BUILDX_FUNCS).execute(data);
}

/** docker manifest inspect: the manifest (or list) indented with tabs; --verbose adds Ref/Descriptor/Raw. */
export async function manifestInspect(
  input: string,
  opts: { client?: RegistryClient; verbose?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const ref = parseReference(input);
  const client = opts.client ?? (await openClient({ env: opts.env }));
  try {
    const root = await client.getManifest(ref);
    const doc = parseImageDocument(root.bytes, `manifest ${formatReference(ref)}`, root.mediaType);
    if (!opts.verbose) return `${JSON.stringify(JSON.parse(root.bytes.toString('utf8')), null, '\t')}\n`;
    const entry = (r: Reference, m: FetchedManifest, platform?: Descriptor['platform']) => {
      const parsed = JSON.parse(m.bytes.toString('utf8')) as { mediaType?: string };
      const mt = parsed.mediaType ?? m.mediaType;
      return {
        Ref: formatReference(r),
        Descriptor: {
          mediaType: mt,
          digest: m.digest,
          size: m.bytes.length,
          ...(platform ? { platform } : {}),
        },
        Raw: m.bytes.toString('base64'),
        [mt.includes('oci') ? 'OCIManifest' : 'SchemaV2Manifest']: parsed,
      };
    };
    if (doc.kind === 'manifest') return `${JSON.stringify(entry(ref, root), null, '\t')}\n`;
    const list = [];
    for (const d of doc.index.manifests) {
      const r = withDigest(ref, d.digest);
      list.push(
        entry(
          r,
          await client.getManifest(withDigest({ domain: ref.domain, path: ref.path }, d.digest)),
          d.platform,
        ),
      );
    }
    return `${JSON.stringify(list, null, '\t')}\n`;
  } catch (err) {
    throw withContext(`inspecting ${formatReference(ref)}`, err);
  } finally {
    if (!opts.client) await client.close();
  }
}
