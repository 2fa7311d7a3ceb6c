/**
 * Token scopes and header lookup, without the HTTP client: modules that only name scopes or
 * read a header of a response (attestations, inspect) do not load undici with them.
 */

export function pullScope(repo: string): string {
  return `repository:${repo}:pull`;
}
export function pushScope(repo: string): string {
  return `repository:${repo}:pull,push`;
}

export function header(
  res: { headers: Record<string, string | string[] | undefined> },
  name: string,
): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
