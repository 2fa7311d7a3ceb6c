/**
 * The warnings summary printed after a build, as buildx prints it:
 *
 *
 *    2 warnings found:
 *    - JSONArgsRecommended: JSON arguments recommended for CMD (line 5)
 *    - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)
 */
import type { VertexWarning } from '../../progress/index.js';

export interface WarningsFormat {
  /** Also print each warning's detail lines, URL and source location. Default false. */
  verbose?: boolean;
  /** Colour the heading yellow. Default false. */
  color?: boolean;
}

export function formatWarnings(warnings: VertexWarning[], opts: WarningsFormat = {}): string {
  if (warnings.length === 0) return '';
  const head = `${warnings.length === 1 ? '1 warning' : `${warnings.length} warnings`} found:\n`;
  let s = '\n ' + (opts.color ? `\x1b[33m${head}\x1b[0m` : head);
  for (const w of warnings) {
    s += ` - ${w.short}\n`;
    if (!opts.verbose) continue;
    for (const d of w.detail) s += `${d}\n`;
    if (w.url) s += `More info: ${w.url}\n`;
    const r = w.range?.[0];
    if (w.sourceInfo && r) s += `${w.sourceInfo.filename}:${r.start.line}\n`;
  }
  return s;
}
