import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LedgerEvent } from '../../src/domain/events.js';
import { runCli, tempRoot, writeScenarioLog } from '../support/cli.js';
import { container, ev, streams } from '../support/fixtures.js';

/*
 * The pictures an on-call engineer opens: `timeline --format html|svg` and `report`,
 * drawn from a generated history, then loaded in a real headless Chromium (Debian's),
 * which must show the lanes with no console error and take a screenshot.
 */

const failed = container('pic-fail', 'pod-p', 'web_pod-p_ns_uid-p_0');
const EXTRA = [
  {
    stream: streams.container(failed),
    expected: 0,
    events: [ev.nameReserved(failed, 'req-p'), ev.specGenerated('req-p')],
  },
  {
    stream: streams.container(failed),
    expected: 2,
    events: [ev.compensated('web_pod-p_ns_uid-p_0', 'SnapshotPrepared', 'req-p')],
  },
];

/** Loads `page` in headless Chromium: the DOM after load, what it logged, and a screenshot. */
function chromium(page: string): { dom: string; log: string; screenshot: string } {
  const profile = mkdtempSync(join(tmpdir(), 'cri-ledger-chromium-'));
  const flags = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    `--user-data-dir=${profile}`,
    '--enable-logging=stderr',
    '--v=0',
  ];
  try {
    const dom = spawnSync('chromium', [...flags, '--dump-dom', `file://${page}`], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(dom.status, 0, `chromium --dump-dom: ${dom.stderr}`);
    const screenshot = `${page}.png`;
    const shot = spawnSync(
      'chromium',
      [...flags, '--window-size=1400,1000', `--screenshot=${screenshot}`, `file://${page}`],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    assert.equal(shot.status, 0, `chromium --screenshot: ${shot.stderr}`);
    return { dom: dom.stdout, log: dom.stderr + shot.stderr, screenshot };
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

describe('timeline and report pictures, in a real browser', () => {
  let temp: { dir: string; cleanup: () => Promise<void> };
  let db = '';
  let events: LedgerEvent[] = [];
  const cli = (args: string[]) => runCli([...args, '--db', db]);

  before(async () => {
    temp = await tempRoot('cri-ledger-pictures-');
    db = join(temp.dir, 'ledger');
    events = await writeScenarioLog(db, { pods: 4, seed: 3, extra: EXTRA });
  });
  after(() => temp?.cleanup());

  it("draws a pod's timeline as a page with a lane for the pod and each of its containers", async () => {
    const reserved = events.find((e) => e.type === 'SandboxReserved')!;
    const podId = reserved.stream.slice('sandbox-'.length);
    const containers = new Set(
      events.filter((e) => e.type === 'NameReserved' && e.data.sandboxId === podId).map((e) => e.stream),
    );
    const page = join(temp.dir, 'pod.html');
    const result = await cli(['timeline', podId, '--format', 'html', '--output', page]);
    assert.equal(result.code, 0, result.stderr);
    const { dom, log, screenshot } = chromium(page);
    const lanes = [...dom.matchAll(/<g class="lane" data-kind="(\w+)" data-stream="([^"]+)"/g)];
    assert.deepEqual(
      lanes.map((m) => m[2]),
      [reserved.stream, ...containers],
      'the pod first, then its containers',
    );
    assert.doesNotMatch(log, /CONSOLE|Uncaught|Failed to load/i, 'no console message and nothing failed to load');
    assert.ok(statSync(screenshot).size > 10_000, 'a screenshot with something drawn in it');
  });

  it('draws a report of a time window with the compensation in its anomalies and every event counted', async () => {
    const page = join(temp.dir, 'report.html');
    const since = events[0]!.at;
    const until = events[events.length - 1]!.at;
    const result = await cli(['report', '--since', since, '--until', until, '--output', page]);
    assert.equal(result.code, 0, result.stderr);
    const { dom, log } = chromium(page);
    const streamsSeen = new Set(events.filter((e) => /^(container|sandbox)-/.test(e.stream)).map((e) => e.stream));
    assert.equal([...dom.matchAll(/<g class="lane"/g)].length, streamsSeen.size);
    assert.match(dom, /<tr class="compensated"><td>[^<]+<\/td><td>compensated<\/td><td>web_pod-p_ns_uid-p_0<\/td>/);
    const counted = [...dom.matchAll(/<tr><td>(\w+)<\/td><td>(\d+)<\/td><\/tr>/g)].reduce(
      (n, m) => n + Number(m[2]),
      0,
    );
    assert.equal(counted, events.length);
    assert.doesNotMatch(log, /CONSOLE|Uncaught|Failed to load/i);
  });

  it('draws an SVG that is a document on its own, and refuses a format it does not know', async () => {
    const svg = (await cli(['timeline', failed.id, '--format', 'svg'])).stdout;
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]* data-lanes="1">/);
    assert.match(svg, /class="bar failed"/);
    assert.match(svg, /class="mark compensated"/);
    assert.doesNotMatch(svg, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'nothing fetched from anywhere');
    const bad = await cli(['timeline', failed.id, '--format', 'pdf']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--format: "pdf" is not text, html or svg/);
    assert.ok(readFileSync(join(temp.dir, 'report.html'), 'utf8').startsWith('<!doctype html>'));
  });
});
