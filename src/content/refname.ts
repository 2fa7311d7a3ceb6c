/**
 * Names in the local store, in the terms of oci/reference.ts (Docker's normalisation):
 *
 *   normalizeName('busybox')              // 'docker.io/library/busybox:latest'
 *   normalizeName('reg:5000/app')         // 'reg:5000/app:latest'
 *   familiarName('docker.io/library/busybox:latest')  // { repository: 'busybox', tag: 'latest' }
 */
import { familiarReference, formatReference, parseReference, type Reference } from '../oci/reference.js';

/**
 * `name[:tag][@digest]` → fully qualified; adds `:latest` when neither tag nor digest is given.
 * A digest names that content alone: `name:tag@digest` is stored as `name@digest`, so pulling
 * or running it never creates or moves the tag (as docker does).
 */
export function normalizeName(ref: string): string {
  const r = parseReference(ref);
  return formatReference(r.digest ? { domain: r.domain, path: r.path, digest: r.digest } : r);
}

/**
 * Splits a stored name into what `images` shows: docker.io/library/ and docker.io/ dropped,
 * `<none>` for a name with no tag. A stored name that is not a reference (an OCI layout may
 * hold any ref.name) is shown whole.
 */
export function familiarName(name: string): { repository: string; tag: string } {
  let r: Reference;
  try {
    r = parseReference(name, { defaultTag: false });
  } catch {
    return { repository: name, tag: '<none>' };
  }
  return {
    repository: familiarReference({ domain: r.domain, path: r.path }),
    tag: r.tag ?? '<none>',
  };
}
