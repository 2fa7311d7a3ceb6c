/**
 * docker's formatter over the template engine: `table`, `table TEMPLATE`, `json` and custom
 * formats rendered for a list of rows, with a header row and tabwriter alignment for tables.
 *
 *   formatRows('table {{.ID}}\t{{.Tag}}', rows, { header: { ID: 'IMAGE ID', Tag: 'TAG' } });
 */
import { tabwrite } from './gofmt.js';
import { HEADER_FUNCS, type TemplateOptions } from './template-funcs.js';
import { parseTemplate, type Template, TemplateError } from './template.js';

export interface FormatRowsOptions extends TemplateOptions {
  /** What a bare `table` means (a `table …` template). Required for `table`. */
  defaultTable?: string;
  /** Column titles by field name, for the header row of `table` formats (docker's SubHeaderContext). */
  header?: Readonly<Record<string, string>>;
}

/** docker's Format.templateString: `table` dropped, spaces trimmed, `\t` and `\n` unescaped. */
export function templateText(format: string): string {
  let out = format;
  if (out === 'json') return '{{json .}}';
  if (out.startsWith('table')) out = out.slice('table'.length);
  out = out.replace(/^ +| +$/g, '');
  return out.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
}

/**
 * Renders `rows` the way docker's formatter.Context.Write does: each row through the
 * template plus a newline; a `table …` format gets a header row (the template run on the
 * column titles, with json/upper/… left out) and columns aligned by a tabwriter with
 * minwidth 10, padding 3. `json` is `{{json .}}`, one object per line. Errors are docker's:
 * `template parsing error: template: :1:2: …`.
 */
export function formatRows(format: string, rows: readonly unknown[], opts: FormatRowsOptions = {}): string {
  const resolved = format === 'table' ? (opts.defaultTable ?? 'table {{.}}') : format;
  const isTable = resolved.startsWith('table');
  let tmpl: Template;
  try {
    tmpl = parseTemplate(templateText(resolved), opts);
  } catch (err) {
    throw err instanceof TemplateError ? new TemplateError(`template parsing error: ${err.message}`) : err;
  }
  let body = '';
  for (const row of rows) {
    try {
      body += `${tmpl.execute(row)}\n`;
    } catch (err) {
      throw err instanceof TemplateError ? new TemplateError(`template parsing error: ${err.message}`) : err;
    }
  }
  if (!isTable) return body;
  let head: string;
  try {
    head = tmpl.execute(new Map(Object.entries(opts.header ?? {})), HEADER_FUNCS);
  } catch (err) {
    // docker ignores a header that fails, keeping what it printed before the failure.
    head = (err as { partial?: string }).partial ?? '';
  }
  return tabwrite(`${head}\n${body}`, { minwidth: 10, padding: 3 });
}
