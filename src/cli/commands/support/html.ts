import type { Picture } from './lanes.js';
import { escapeXml, renderSvg } from './svg.js';

/*
 * One self-contained HTML page: the SVG inline, the anomalies and the counts by event
 * type as tables, styles inline. No script and nothing fetched, so it opens offline.
 */

export function renderHtml(p: Picture, subtitle: string): string {
  const anomalies = p.anomalies.length
    ? `<table id="anomalies"><thead><tr><th>time</th><th>what</th><th>where</th><th>detail</th></tr></thead><tbody>${p.anomalies
        .map(
          (a) =>
            `<tr class="${a.what}"><td>${escapeXml(a.at)}</td><td>${escapeXml(a.what)}</td><td>${escapeXml(a.name)}</td><td>${escapeXml(a.detail)}</td></tr>`,
        )
        .join('')}</tbody></table>`
    : '<p id="anomalies">No anomalies: no compensation, stall, retry served, OOM kill, failed exit or recovery.</p>';
  const counts = `<table id="counts"><thead><tr><th>event</th><th>count</th></tr></thead><tbody>${p.countsByType
    .map(([type, n]) => `<tr><td>${escapeXml(type)}</td><td>${n}</td></tr>`)
    .join('')}</tbody></table>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(p.title)}</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #111; }
h1 { font-size: 20px; margin: 0 0 4px; } .sub { color: #555; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0 24px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
tr.compensated td, tr.oom td, tr.stalled td { background: #fde2e1; } tr.exit td { background: #fff3cd; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }
</style></head><body>
<h1>${escapeXml(p.title)}</h1><p class="sub">${escapeXml(subtitle)}</p>
<div class="legend"><span><i style="background:#4c78a8"></i>saga step</span><span><i style="background:#f58518"></i>slow step (1 s or more)</span><span><i style="background:#e45756"></i>compensated</span><span><i style="background:#7fbf7b"></i>running / ready</span><span><i style="background:#cccccc"></i>created, exited, not ready</span><span>◆ compensation, stall, OOM kill, recovery</span><span>● exit, retry, exec</span></div>
<div id="lanes">${renderSvg(p)}</div>
<h2>Anomalies (${p.anomalies.length})</h2>${anomalies}
<h2>Events by type</h2>${counts}
</body></html>
`;
}
