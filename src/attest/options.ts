/**
 * The attestation flags as buildx spells them, parsed into one typed request:
 *
 *   --attest type=sbom[,generator=IMAGE]      --sbom=true|false|generator=IMAGE
 *   --attest type=provenance[,mode=min|max]   --provenance=true|false|mode=min|max
 *   --attest type=…,disabled=true
 *
 *   const spec = parseAttestFlags({ attest, sbom, provenance });   // UsageError on bad input
 *   const req = withDefaultAttestations(spec, { imageOutput: true, env });
 *   req.sbom, req.provenance                                       // undefined: not made
 *
 * As buildx: `--sbom`/`--provenance` are appended after the `--attest`s and a later spec of a
 * type replaces an earlier one; min provenance is added by default to builds that export an
 * image, unless asked otherwise or `BUILDX_NO_DEFAULT_ATTESTATIONS` is set.
 */
import { UsageError } from '../util/errors.js';

export interface SbomRequest {
  /** `generator=`: the scanner image BuildKit would run; the local builder scans itself. */
  generator?: string;
  /** Every key=value given (type excluded), for BuildKit's `attest:sbom` attribute. */
  params: Record<string, string>;
}

export interface ProvenanceRequest {
  mode: 'min' | 'max';
  /** `builder-id=`: the builder's id in the provenance (default: polyarch's). */
  builderId?: string;
  params: Record<string, string>;
}

export interface AttestRequest {
  sbom?: SbomRequest;
  provenance?: ProvenanceRequest;
}

/** What the flags said per type: a request, explicitly disabled (null), or nothing (absent). */
export interface AttestSpec {
  sbom?: SbomRequest | null;
  provenance?: ProvenanceRequest | null;
}

const KNOWN_KEYS: Record<'sbom' | 'provenance', string[]> = {
  sbom: ['generator', 'scan-context', 'scan-stage', 'disabled'],
  provenance: ['mode', 'builder-id', 'version', 'reproducible', 'inline-only', 'disabled', 'filename'],
};

function parseBool(v: string): boolean | undefined {
  if (/^(true|1|t|yes|on)$/i.test(v)) return true;
  if (/^(false|0|f|no|off)$/i.test(v)) return false;
  return undefined;
}

function parseCsv(spec: string, flag: string): Map<string, string> {
  const kv = new Map<string, string>();
  for (const part of spec.split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid ${flag} "${spec}": expected key=value pairs, got "${part}"`);
    kv.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return kv;
}

/** One `--attest` spec → its type and request (null when disabled). */
export function parseAttest(
  spec: string,
  flag = '--attest',
): { type: 'sbom'; value: SbomRequest | null } | { type: 'provenance'; value: ProvenanceRequest | null } {
  const kv = parseCsv(spec, flag);
  const type = kv.get('type');
  if (type === undefined)
    throw new UsageError(`invalid ${flag} "${spec}": type is required (sbom or provenance)`);
  if (type !== 'sbom' && type !== 'provenance')
    throw new UsageError(
      `invalid ${flag} "${spec}": unknown attestation type "${type}" (expected sbom or provenance)`,
    );
  kv.delete('type');
  for (const k of kv.keys())
    if (!KNOWN_KEYS[type].includes(k))
      throw new UsageError(
        `invalid ${flag} "${spec}": unknown ${type} option "${k}" (expected ${KNOWN_KEYS[type].join(', ')})`,
      );
  const disabled = kv.get('disabled');
  if (disabled !== undefined) {
    const b = parseBool(disabled);
    if (b === undefined) throw new UsageError(`invalid ${flag} "${spec}": disabled must be true or false`);
    if (b) return { type, value: null } as ReturnType<typeof parseAttest>;
    kv.delete('disabled');
  }
  const params = Object.fromEntries(kv);
  if (type === 'sbom') {
    const generator = kv.get('generator');
    if (generator === '') throw new UsageError(`invalid ${flag} "${spec}": generator is empty`);
    return { type, value: { ...(generator !== undefined ? { generator } : {}), params } };
  }
  const mode = kv.get('mode') ?? 'min';
  if (mode !== 'min' && mode !== 'max')
    throw new UsageError(`invalid ${flag} "${spec}": mode must be min or max, not "${mode}"`);
  const version = kv.get('version');
  if (version !== undefined && version !== 'v1')
    throw new UsageError(
      `invalid ${flag} "${spec}": only SLSA provenance version v1 is made (not "${version}")`,
    );
  const builderId = kv.get('builder-id');
  return { type, value: { mode, ...(builderId ? { builderId } : {}), params } };
}

/** `--sbom=V` / `--provenance=V` as buildx turns them into an `--attest` spec. */
function shorthand(type: 'sbom' | 'provenance', value: string): string {
  const b = parseBool(value.trim());
  if (b === true) return `type=${type}`;
  if (b === false) return `type=${type},disabled=true`;
  return `type=${type},${value}`;
}

export function parseAttestFlags(flags: {
  attest?: string[];
  sbom?: string;
  provenance?: string;
}): AttestSpec {
  const spec: AttestSpec = {};
  const all: Array<[string, string]> = (flags.attest ?? []).map((a) => [a, '--attest']);
  if (flags.sbom !== undefined) all.push([shorthand('sbom', flags.sbom), `--sbom=${flags.sbom}`]);
  if (flags.provenance !== undefined)
    all.push([shorthand('provenance', flags.provenance), `--provenance=${flags.provenance}`]);
  for (const [s, flag] of all) {
    const r = parseAttest(s, flag.startsWith('--attest') ? '--attest' : flag.split('=')[0]!);
    if (r.type === 'sbom') spec.sbom = r.value;
    else spec.provenance = r.value;
  }
  return spec;
}

/**
 * The attestations to make: what was asked, plus buildx's default min provenance for a build
 * that exports an image (not to a local directory or tar) when provenance was not mentioned.
 */
export function withDefaultAttestations(
  spec: AttestSpec,
  opts: { imageOutput: boolean; env?: NodeJS.ProcessEnv },
): AttestRequest {
  const env = opts.env ?? process.env;
  const out: AttestRequest = {};
  if (spec.sbom) out.sbom = spec.sbom;
  if (spec.provenance) out.provenance = spec.provenance;
  const noDefaults = parseBool(env.BUILDX_NO_DEFAULT_ATTESTATIONS ?? '') === true;
  if (spec.provenance === undefined && opts.imageOutput && !noDefaults)
    out.provenance = { mode: 'min', params: { mode: 'min' } };
  return out;
}

/** BuildKit's frontend attributes for a request (`attest:sbom`, `attest:provenance`), as buildx sends them. */
export function attestFrontendAttrs(req: AttestRequest): Record<string, string> {
  const attrs: Record<string, string> = {};
  const csv = (p: Record<string, string>) =>
    Object.entries(p)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
  if (req.sbom) attrs['attest:sbom'] = csv(req.sbom.params);
  if (req.provenance)
    attrs['attest:provenance'] = csv({ mode: req.provenance.mode, ...req.provenance.params });
  return attrs;
}
