import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { explain, reservations } from '../../src/cli/commands/support/explanation.js';
import { sessionRows, sessionSentences, sessionStories } from '../../src/cli/commands/support/sessions.js';
import { summarize } from '../../src/cli/commands/support/summary.js';
import { container, ev, streams, time } from '../support/fixtures.js';
import { history } from '../support/history.js';

const c = container('c1');
const s = streams.container(c);
const pod = { id: c.sandboxId, name: 'pod1_default_uid-pod1_0' };
const events = history(
  [s, ev.nameReserved(c)],
  [s, ev.specGenerated()],
  [s, ev.snapshotPrepared(c)],
  [s, ev.containerCreated()],
  [s, ev.containerStarted()],
  [s, ev.execStarted('e1', ['sh', '-c', 'cat /etc/os-release'])],
  [s, ev.execEnded('e1', 1)],
  [s, ev.execStarted('e2', ['top'])],
);
const NOW = Date.parse(time(70));

describe('sessions in timeline and explain', () => {
  it('pairs each start with its end, and keeps one without an end as open', () => {
    const stories = sessionStories(events);
    assert.deepEqual(
      stories.map((x) => [x.sessionId, x.correlationId, x.end?.reason ?? 'open', x.end?.exitCode]),
      [
        ['e1', 'req-exec-e1', 'exited', 1],
        ['e2', 'req-exec-e2', 'open', undefined],
      ],
    );
  });

  it('shows who ran what, how long, how it ended and the bytes, in the timeline table', () => {
    const [done, open] = sessionRows(sessionStories(events), NOW);
    assert.deepEqual(done, [
      'e1',
      'exec',
      'req-exec-e1',
      time(2.5),
      '250ms',
      'exit 1',
      '0B in, 42B out',
      'sh -c "cat /etc/os-release"',
    ]);
    assert.equal(open?.[5], 'still open');
    assert.match(open?.[4] ?? '', /\+$/);
  });

  it('tells each session in a sentence in explain', () => {
    const [reserved] = reservations(events);
    const lines = explain({ target: reserved!, events, known: [reserved!], source: 'test', nowMs: NOW });
    assert.ok(
      lines.includes(
        `exec session e1 (request req-exec-e1) ran sh -c "cat /etc/os-release" streams stdout+stderr, over spdy (v4.channel.k8s.io), from ${time(2.5)} to ${time(2.75)} (250ms); ended exit 1; 0B in, 42B out.`,
      ),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => /^exec session e2 .* ran top .*is still open/.test(l)),
      lines.join('\n'),
    );
  });

  it('explains a port forward with its bytes per port', () => {
    const ps = streams.sandbox(pod);
    const forwarded = history(
      [ps, ev.sandboxReserved(pod)],
      [ps, ev.portForwardStarted('p1', [80, 443])],
      [ps, ev.portForwardEnded('p1', [80, 443])],
    );
    const [line] = sessionSentences(sessionStories(forwarded), NOW);
    assert.match(line ?? '', /^port-forward session p1 \(request req-pf-p1\) forwarded ports 80, 443 over websocket/);
    assert.match(
      line ?? '',
      /ended client-gone; 20B in, 40B out \(80: 1 connection, 10B in, 20B out; 443: 1 connection/,
    );
  });

  it('summarizes session events on one line each', () => {
    const lines = events.slice(5, 7).map(summarize);
    assert.deepEqual(lines, [
      'session=e1 cmd="sh -c cat /etc/os-release" streams=stdout+stderr spdy/v4.channel.k8s.io',
      'session=e1 exited exit=1 in=0B out=42B 250ms',
    ]);
  });
});
