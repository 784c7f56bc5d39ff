import type { Lane, MarkKind, Picture } from './lanes.js';
import { formatDuration } from './time.js';

/*
 * The picture as one self-contained SVG: no script, no font or stylesheet from anywhere,
 * so it opens offline in any browser and can be attached to an incident. Hover texts
 * (<title>) carry each event's details.
 */

const LABEL_W = 260;
const PLOT_W = 900;
const LANE_H = 28;
const AXIS_H = 34;
const COLORS: Record<string, string> = {
  step: '#4c78a8',
  slow: '#f58518',
  failed: '#e45756',
  running: '#7fbf7b',
  idle: '#cccccc',
};
const MARKS: Record<MarkKind, { color: string; shape: 'circle' | 'diamond' }> = {
  exit: { color: '#555555', shape: 'circle' },
  oom: { color: '#d62728', shape: 'diamond' },
  compensated: { color: '#e45756', shape: 'diamond' },
  stalled: { color: '#ff7f0e', shape: 'diamond' },
  retry: { color: '#9467bd', shape: 'circle' },
  recovered: { color: '#8c564b', shape: 'diamond' },
  exec: { color: '#17becf', shape: 'circle' },
};

export function escapeXml(text: string): string {
  return text.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!,
  );
}

export function renderSvg(p: Picture): string {
  const span = Math.max(1, p.toMs - p.fromMs);
  const x = (ms: number): number => LABEL_W + ((ms - p.fromMs) / span) * PLOT_W;
  const height = AXIS_H + p.lanes.length * LANE_H + 10;
  const width = LABEL_W + PLOT_W + 20;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" data-lanes="${p.lanes.length}">`,
    `<title>${escapeXml(p.title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const ms = p.fromMs + (span * i) / 5;
    parts.push(
      `<line x1="${x(ms)}" y1="${AXIS_H - 6}" x2="${x(ms)}" y2="${height - 6}" stroke="#dddddd"/>`,
      `<text x="${x(ms)}" y="${AXIS_H - 12}" text-anchor="middle" fill="#333333">+${escapeXml(formatDuration(ms - p.fromMs))}</text>`,
    );
  }
  p.lanes.forEach((lane, i) => parts.push(renderLane(lane, AXIS_H + i * LANE_H, x)));
  parts.push('</svg>');
  return parts.join('\n');
}

function renderLane(lane: Lane, top: number, x: (ms: number) => number): string {
  const mid = top + LANE_H / 2;
  const label = `${lane.kind === 'sandbox' ? 'pod ' : '  '}${lane.name}`;
  const parts = [
    `<g class="lane" data-kind="${lane.kind}" data-stream="${escapeXml(lane.stream)}">`,
    `<text x="6" y="${mid + 4}" fill="#111111" font-weight="${lane.kind === 'sandbox' ? 'bold' : 'normal'}">${escapeXml(label.length > 38 ? `${label.slice(0, 37)}…` : label)}<title>${escapeXml(lane.stream)}</title></text>`,
  ];
  for (const bar of lane.bars) {
    const band = bar.kind === 'running' || bar.kind === 'idle';
    const y = band ? mid - 3 : top + 5;
    const h = band ? 6 : LANE_H - 10;
    const w = Math.max(2, x(bar.endMs) - x(bar.startMs));
    parts.push(
      `<rect class="bar ${bar.kind}" x="${x(bar.startMs)}" y="${y}" width="${w}" height="${h}" fill="${COLORS[bar.kind]}" opacity="${band ? 0.8 : 0.95}"><title>${escapeXml(`${bar.label} (${formatDuration(bar.endMs - bar.startMs)})\n${bar.detail}`)}</title></rect>`,
    );
  }
  for (const mark of lane.marks) {
    const { color, shape } = MARKS[mark.kind];
    const cx = x(mark.atMs);
    const title = `<title>${escapeXml(`${mark.label}\n${mark.detail}`)}</title>`;
    parts.push(
      shape === 'circle'
        ? `<circle class="mark ${mark.kind}" cx="${cx}" cy="${mid}" r="5" fill="${color}" stroke="#ffffff">${title}</circle>`
        : `<path class="mark ${mark.kind}" d="M${cx} ${mid - 7} L${cx + 7} ${mid} L${cx} ${mid + 7} L${cx - 7} ${mid} Z" fill="${color}" stroke="#ffffff">${title}</path>`,
    );
  }
  parts.push('</g>');
  return parts.join('\n');
}
