/**
 * A build record as one self-contained HTML page (inline CSS, SVG and a little JS; nothing
 * fetched): a Gantt timeline per platform on a shared time axis (cached steps hatched, failed
 * ones red, the critical path outlined), per-platform sums with the native-vs-emulated split,
 * and a table of every step with its duration and the tail of its logs. For the person who
 * asks "why was arm/v7 slow".
 *
 *   await writeFile('report.html', renderReport(record));
 *
 * The page's structure is an interface (the headless-Chromium test reads it): one
 * `section.row[data-platform]` per platform with `data-steps` and one `rect.step` per step,
 * plus `section.row[data-shared]` for steps of no platform ([internal], exporting).
 */
import { criticalPath, formatDuration, platformSummaries, stepEnd } from './steps.js';
import type { BuildRecord, StepRecord } from './types.js';

const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Width of the SVG's coordinate system, the name column and one lane. */
const W = 1000;
const LABEL = 330;
const LANE = 20;
const AXIS = 22;

const CSS = `
:root{--fg:#1d2330;--muted:#667085;--bg:#fff;--lane:#f4f6fa;--run:#3b82f6;--emu:#f59e0b;--cached:#98a2b3;--err:#dc2626;--crit:#7c3aed}
*{box-sizing:border-box}body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0;padding:20px 28px;max-width:1280px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}h3{font-size:14px;margin:0 0 4px;display:flex;gap:10px;align-items:baseline}
.meta{color:var(--muted);margin:0 0 12px}.meta b{color:var(--fg);font-weight:600}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600;color:#fff;background:var(--run)}
.badge.emulated{background:var(--emu)}.badge.unknown{background:var(--cached)}.badge.error,.badge.canceled{background:var(--err)}.badge.completed{background:#16a34a}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #e4e7ec;vertical-align:top}
th{color:var(--muted);font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.row{margin:14px 0 6px}.sub{color:var(--muted);font-weight:400}
svg.gantt{width:100%;height:auto;display:block}svg text{font:12px system-ui,sans-serif;fill:var(--fg)}svg .tick{fill:var(--muted);font-size:11px}
svg .grid{stroke:#e4e7ec}svg .lane{fill:var(--lane)}svg rect.step{fill:var(--run)}svg rect.step.emulated{fill:var(--emu)}
svg rect.step.cached{fill:url(#hatch);stroke:var(--cached)}svg rect.step.error{fill:var(--err)}
svg rect.step.critical{stroke:var(--crit);stroke-width:2.5}svg rect.step:hover{opacity:.8;cursor:pointer}
.split{display:flex;height:16px;border-radius:4px;overflow:hidden;margin:4px 0 2px;max-width:600px}.split div{height:100%}
.legend{color:var(--muted);font-size:12px;display:flex;gap:14px;flex-wrap:wrap}.legend i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle;border-radius:2px}
tr.critical td:first-child{border-left:3px solid var(--crit)}tr.sel{background:#eef4ff}
details pre{white-space:pre-wrap;word-break:break-all;max-height:300px;overflow:auto;background:#0f172a;color:#e2e8f0;padding:8px;border-radius:4px;font-size:12px;margin:4px 0}
.err{color:var(--err)}
`;

const JS = `
(function(){
  var sel=null;
  function pick(d){
    if(sel){sel.classList.remove('sel');}
    sel=document.querySelector('tr[data-digest="'+CSS.escape(d)+'"]');
    if(sel){sel.classList.add('sel');sel.scrollIntoView({block:'center'});}
  }
  document.querySelectorAll('rect.step').forEach(function(r){
    r.addEventListener('click',function(){pick(r.getAttribute('data-digest'));});
  });
  var box=document.getElementById('hide-cached');
  if(box)box.addEventListener('change',function(){
    document.querySelectorAll('tr.cached').forEach(function(t){t.style.display=box.checked?'none':'';});
  });
  document.documentElement.setAttribute('data-ready','1');
})();
`;

/** Durations on the page: milliseconds under a second (a warm build is all short steps). */
function fmtMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)}ms` : formatDuration(ms);
}

function badge(native: boolean | undefined): string {
  if (native === true) return '<span class="badge native">native</span>';
  if (native === false) return '<span class="badge emulated">emulated</span>';
  return '<span class="badge unknown">remote</span>';
}

function stepClass(s: StepRecord, critical: Set<string>, emulated: boolean): string {
  const c = ['step'];
  if (s.cached) c.push('cached');
  if (s.error !== undefined) c.push('error');
  if (emulated) c.push('emulated');
  if (critical.has(s.digest)) c.push('critical');
  return c.join(' ');
}

/** Round tick steps (ms) for the axis: about 8 ticks across `span`. */
function tickStep(span: number): number {
  const raw = span / 8;
  const steps = [
    10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    1_800_000,
  ];
  return steps.find((s) => s >= raw) ?? 3_600_000;
}

function gantt(
  r: BuildRecord,
  steps: StepRecord[],
  t0: number,
  span: number,
  critical: Set<string>,
  emulated: boolean,
): string {
  const x = (t: number) => LABEL + ((t - t0) / span) * (W - LABEL - 8);
  const h = AXIS + steps.length * LANE + 4;
  const tick = tickStep(span);
  const parts: string[] = [];
  parts.push(`<svg class="gantt" viewBox="0 0 ${W} ${h}" role="img" aria-label="timeline">`);
  for (let t = 0; t <= span; t += tick) {
    const tx = x(t0 + t).toFixed(1);
    parts.push(`<line class="grid" x1="${tx}" y1="${AXIS - 4}" x2="${tx}" y2="${h}"/>`);
    parts.push(`<text class="tick" x="${tx}" y="${AXIS - 8}" text-anchor="middle">${esc(fmtMs(t))}</text>`);
  }
  steps.forEach((s, i) => {
    const y = AXIS + i * LANE;
    const start = s.started!;
    const end = stepEnd(s, r);
    const bx = x(start);
    const bw = Math.max(2, x(end) - bx);
    const label = s.name.length > 52 ? `${s.name.slice(0, 51)}…` : s.name;
    const dur = end - start;
    const what = s.error !== undefined ? `ERROR: ${s.error}` : s.cached ? 'CACHED' : fmtMs(dur);
    if (i % 2 === 0) parts.push(`<rect class="lane" x="0" y="${y}" width="${W}" height="${LANE}"/>`);
    parts.push(`<text x="4" y="${y + 14}">${esc(label)}</text>`);
    parts.push(
      `<rect class="${stepClass(s, critical, emulated)}" data-digest="${esc(s.digest)}" x="${bx.toFixed(1)}" y="${y + 3}" width="${bw.toFixed(1)}" height="${LANE - 6}" rx="2"><title>${esc(`${s.name}\n${what} (+${fmtMs(start - t0)})`)}</title></rect>`,
    );
    const tx = bx + bw + 4;
    if (tx < W - 40)
      parts.push(
        `<text class="tick" x="${tx.toFixed(1)}" y="${y + 14}">${esc(s.cached ? 'cached' : fmtMs(dur))}</text>`,
      );
  });
  parts.push('</svg>');
  return parts.join('');
}

export function renderReport(r: BuildRecord): string {
  const shown = r.steps.filter((s) => s.started !== undefined).sort((a, b) => a.started! - b.started!);
  const t0 = Math.min(r.createdAt, ...shown.map((s) => s.started!));
  const end = Math.max(r.completedAt ?? 0, ...shown.map((s) => stepEnd(s, r)), t0 + 1);
  const span = end - t0;
  const crit = criticalPath(r);
  const critical = new Set(crit.map((s) => s.digest));
  const sums = platformSummaries(r);
  const nativeOf = new Map(r.platforms.map((p) => [p.platform, p.native]));
  const out: string[] = [];
  out.push('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">');
  out.push('<meta name="viewport" content="width=device-width,initial-scale=1">');
  out.push(
    `<title>${esc(`Build ${r.name || r.ref} — polyarch history`)}</title><style>${CSS}</style></head><body>`,
  );
  out.push(`<h1>${esc(r.name || r.ref)} <span class="badge ${r.status}">${esc(r.status)}</span></h1>`);
  const cached = shown.filter((s) => s.cached).length;
  out.push(
    `<p class="meta">ref <b>${esc(r.ref)}</b> · started <b>${esc(new Date(r.createdAt).toISOString().replace('T', ' ').slice(0, 19))} UTC</b> · duration <b>${esc(fmtMs(span))}</b> · ${shown.length} steps (${cached} cached) · host <b>${esc(r.host)}</b>${r.request.builder ? ` · builder <b>${esc(r.request.builder)}</b>` : ''}</p>`,
  );
  if (r.error) out.push(`<p class="err">Error: ${esc(r.error)}</p>`);

  // Per platform: where the time went, and the emulated-vs-native split.
  out.push(
    '<h2>Platforms</h2><table class="platforms"><thead><tr><th>platform</th><th>runs</th><th>steps</th><th>cached</th><th>wall time</th><th>step time</th><th>slowest step</th></tr></thead><tbody>',
  );
  for (const s of sums)
    out.push(
      `<tr data-platform="${esc(s.platform)}"><td>${esc(s.platform)}${s.node ? ` <span class="sub">(${esc(s.node)})</span>` : ''}</td><td>${badge(s.native)}</td><td class="num">${s.steps}</td><td class="num">${s.cached}</td><td class="num">${fmtMs(s.wallTime)}</td><td class="num">${fmtMs(s.stepTime)}</td><td>${s.slowest ? `${esc(s.slowest.name)} <span class="sub">${fmtMs(s.slowest.ms)}</span>` : ''}</td></tr>`,
    );
  out.push('</tbody></table>');
  const emu = sums.filter((s) => s.native === false).reduce((n, s) => n + s.stepTime, 0);
  const nat = sums.filter((s) => s.native === true).reduce((n, s) => n + s.stepTime, 0);
  const other = sums.filter((s) => s.native === undefined).reduce((n, s) => n + s.stepTime, 0);
  const total = emu + nat + other;
  if (total > 0) {
    const pct = (n: number) => ((n / total) * 100).toFixed(1);
    out.push(
      `<h2>Emulated vs native</h2><div class="split" data-emulated-ms="${emu}" data-native-ms="${nat}"><div style="width:${pct(nat)}%;background:var(--run)"></div><div style="width:${pct(emu)}%;background:var(--emu)"></div><div style="width:${pct(other)}%;background:var(--cached)"></div></div>`,
    );
    out.push(
      `<div class="legend"><span><i style="background:var(--run)"></i>native ${fmtMs(nat)} (${pct(nat)}%)</span><span><i style="background:var(--emu)"></i>emulated ${fmtMs(emu)} (${pct(emu)}%)</span>${other > 0 ? `<span><i style="background:var(--cached)"></i>remote ${fmtMs(other)}</span>` : ''}<span>of step time</span></div>`,
    );
  }

  // The timeline: one Gantt per platform, then the shared steps, all on one axis.
  out.push('<h2>Timeline</h2>');
  out.push(
    '<div class="legend"><span><i style="background:var(--run)"></i>native step</span><span><i style="background:var(--emu)"></i>emulated step</span><span><i style="background:#fff;border:1px solid var(--cached)"></i>cached</span><span><i style="background:var(--err)"></i>failed</span><span><i style="background:#fff;border:2px solid var(--crit)"></i>critical path</span></div>',
  );
  out.push(
    '<svg width="0" height="0" style="position:absolute"><defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#eef0f4"/><line x1="0" y1="0" x2="0" y2="6" stroke="#98a2b3" stroke-width="2"/></pattern></defs></svg>',
  );
  for (const s of sums) {
    const steps = shown.filter((x) => x.platform === s.platform);
    out.push(
      `<section class="row" data-platform="${esc(s.platform)}" data-steps="${steps.length}"><h3>${esc(s.platform)} ${badge(s.native)}<span class="sub">${steps.length} steps · ${fmtMs(s.wallTime)} wall · ${fmtMs(s.stepTime)} in steps</span></h3>${gantt(r, steps, t0, span, critical, s.native === false)}</section>`,
    );
  }
  const shared = shown.filter((x) => x.platform === undefined || !nativeOf.has(x.platform));
  if (shared.length > 0)
    out.push(
      `<section class="row" data-shared="1" data-steps="${shared.length}"><h3>shared steps <span class="sub">context, metadata, export</span></h3>${gantt(r, shared, t0, span, critical, false)}</section>`,
    );

  // The critical path in words, then every step.
  if (crit.length > 0) {
    out.push('<h2>Critical path</h2><ol class="critical">');
    for (const s of crit)
      out.push(
        `<li>${esc(s.name)} <span class="sub">${s.cached ? 'cached' : fmtMs(stepEnd(s, r) - s.started!)}</span></li>`,
      );
    out.push('</ol>');
  }
  out.push(
    '<h2>Steps</h2><label class="legend"><input type="checkbox" id="hide-cached"> hide cached steps</label>',
  );
  out.push(
    '<table class="steps"><thead><tr><th>step</th><th>platform</th><th>start</th><th>duration</th><th>result</th></tr></thead><tbody>',
  );
  const logsOf = new Map<string, string>();
  for (const l of r.logs) logsOf.set(l.vertex, (logsOf.get(l.vertex) ?? '') + l.text);
  for (const s of shown) {
    const dur = stepEnd(s, r) - s.started!;
    const result =
      s.error !== undefined
        ? `<span class="err">ERROR: ${esc(s.error)}</span>`
        : s.cached
          ? 'CACHED'
          : s.completed === undefined
            ? 'unfinished'
            : 'done';
    const log = logsOf.get(s.digest);
    const cls = [critical.has(s.digest) ? 'critical' : '', s.cached ? 'cached' : '']
      .filter(Boolean)
      .join(' ');
    out.push(
      `<tr data-digest="${esc(s.digest)}"${cls ? ` class="${cls}"` : ''}><td>${esc(s.name)}${log ? `<details><summary>logs</summary><pre>${esc(log)}</pre></details>` : ''}</td><td>${esc(s.platform ?? '')}${s.node ? ` <span class="sub">${esc(s.node)}</span>` : ''}</td><td class="num">+${fmtMs(s.started! - t0)}</td><td class="num">${fmtMs(dur)}</td><td>${result}</td></tr>`,
    );
  }
  out.push('</tbody></table>');
  if (r.logsClipped)
    out.push(
      `<p class="meta">${r.logsClipped} bytes of logs were not kept (per-step and per-build caps).</p>`,
    );
  out.push(`<script>${JS}</script></body></html>\n`);
  return out.join('\n');
}
