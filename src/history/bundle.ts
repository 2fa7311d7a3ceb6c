/**
 * `history export` bundles: one JSON object `{ mediaType, exportedAt, records }` holding whole
 * records (types.ts), self-describing by its media type. `readBundle` checks a bundle before
 * anything is imported, so a foreign or damaged file changes nothing.
 */
import { PolyarchError } from '../util/errors.js';
import { BUNDLE_MEDIA_TYPE, type BuildRecord, type HistoryBundle, RECORD_VERSION } from './types.js';

const REF = /^[a-z0-9]{25}$/;

export function makeBundle(records: BuildRecord[], now = Date.now()): HistoryBundle {
  return { mediaType: BUNDLE_MEDIA_TYPE, exportedAt: now, records };
}

/** Parses and checks a bundle; `source` names the input in errors. */
export function readBundle(text: string, source: string): HistoryBundle {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new PolyarchError('INVALID_ARGUMENT', `${source}: not a history bundle: ${(err as Error).message}`);
  }
  const b = v as Partial<HistoryBundle> | null;
  if (!b || typeof b !== 'object' || b.mediaType !== BUNDLE_MEDIA_TYPE || !Array.isArray(b.records))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `${source}: not a history bundle (expected mediaType ${BUNDLE_MEDIA_TYPE})`,
    );
  b.records.forEach((r, i) => {
    const ok =
      r &&
      typeof r === 'object' &&
      r.version === RECORD_VERSION &&
      typeof r.ref === 'string' &&
      REF.test(r.ref) &&
      typeof r.createdAt === 'number' &&
      typeof r.status === 'string' &&
      Array.isArray(r.steps) &&
      Array.isArray(r.logs) &&
      Array.isArray(r.platforms) &&
      Array.isArray(r.statuses) &&
      Array.isArray(r.warnings) &&
      r.request &&
      typeof r.request === 'object';
    if (!ok)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `${source}: record ${i} is not a version ${RECORD_VERSION} build record`,
      );
  });
  return b as HistoryBundle;
}
