import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  explain,
  reservations,
  resolveReference,
  type Reservation,
} from '../../src/cli/commands/support/explanation.js';
import { InvalidArgumentError, NotFoundError } from '../../src/domain/errors.js';
import type { LedgerEvent, NewEvent } from '../../src/domain/events.js';
import { container, ev, sandbox, streams } from '../support/fixtures.js';
import { history } from '../support/history.js';

/*
 * `explain`'s sentences, from generated events: each case builds a small log, folds
 * its reservations, and reads what explain says about one stream.
 */

const T0 = Date.parse('2026-11-28T10:02:00.000Z');
const at = (ms: number): string => new Date(T0 + ms).toISOString();

/** A history whose events were recorded at the given offsets (ms after T0). */
function log(...entries: Array<[stream: string, event: NewEvent, ms: number]>): LedgerEvent[] {
  return history(...entries.map(([s, e]) => [s, e] as [string, NewEvent])).map((e, i) => ({
    ...e,
    at: at(entries[i]![2]),
  }));
}

function said(events: LedgerEvent[], ref: string, nowMs = T0 + 600_000): string {
  const known = reservations(
    events.filter((e) =>
      [
        'NameReserved',
        'SandboxReserved',
        'ContainerCreated',
        'SandboxReady',
        'Compensated',
        'ContainerRemoved',
        'SandboxRemoved',
      ].includes(e.type),
    ),
  );
  const { target } = resolveReference(known, ref);
  return explain({
    target,
    events: events.filter((e) => e.stream === target.stream),
    known,
    source: 'db test',
    nowMs,
  }).join('\n');
}

const stalled = (step: string, elapsedMs: number, deadlineMs: number): NewEvent<'OperationStalled'> => ({
  type: 'OperationStalled',
  correlationId: 'req-R',
  data: { operation: 'CreateContainer', step, elapsedMs, deadline: at(deadlineMs) },
});
const retry = (ms: number): NewEvent<'RetryServed'> => ({
  type: 'RetryServed',
  correlationId: `req-retry-${ms}`,
  data: { requestDigest: 'sha256:x', servedAt: at(ms) },
});

const x = container('explain-x', 'pod1', 'app_pod1_ns_uid-1_0');
const sx = streams.container(x);

describe('explain', () => {
  it('says who holds the name, which request created it, how long it stalled and how often it was retried', () => {
    const events = log(
      [sx, ev.nameReserved(x, 'req-R'), 0],
      [sx, ev.specGenerated('req-R'), 0],
      [sx, stalled('SnapshotPrepared', 1_200, 120_000), 120_000],
      [sx, ev.snapshotPrepared(x, 'req-R'), 250_000],
      [sx, ev.containerCreated(1, 'req-R'), 250_000],
      [sx, retry(251_000), 251_000],
      [sx, retry(252_000), 252_000],
      [sx, retry(253_000), 253_000],
    );
    const text = said(events, x.name);
    assert.match(text, new RegExp(`^container ${x.id}$`, 'm'));
    assert.match(
      text,
      new RegExp(
        `^name ${x.name} is held by container ${x.id.slice(0, 12)}, reserved by request req-R at ${at(0)}\\.$`,
        'm',
      ),
    );
    assert.match(
      text,
      new RegExp(
        `^created by request req-R at ${at(250_000).replace(/\./g, '\\.')}, 4m10s after the name was reserved`,
        'm',
      ),
    );
    assert.match(
      text,
      /^stalled in SnapshotPrepared for 2m10s past the caller's deadline 2026-11-28T10:04:00.000Z \(which passed 1.200s into the step\), until the next event, SnapshotPrepared, at /m,
    );
    assert.match(
      text,
      /^retried 3 times with the same request; served from the ledger each time \(the last at 2026-11-28T10:06:13.000Z\)/m,
    );
    assert.match(text, /^source: db test, 8 events \(seq 1\.\.8\)\.$/m);
    assert.doesNotMatch(text, /in flight/);
  });

  it('says a fast creation stalled nowhere and was never retried', () => {
    const events = log(
      [sx, ev.nameReserved(x, 'req-R'), 0],
      [sx, ev.specGenerated('req-R'), 0],
      [sx, ev.snapshotPrepared(x, 'req-R'), 40],
      [sx, ev.containerCreated(1, 'req-R'), 40],
    );
    const text = said(events, x.id);
    assert.match(text, /40ms after the name was reserved/);
    assert.doesNotMatch(text, /stalled|retried/);
  });

  it('says why an exited container exited: code, reason and time', () => {
    const events = log(
      [sx, ev.nameReserved(x), 0],
      [sx, ev.containerCreated(1), 10],
      [sx, ev.containerStarted(2), 20],
      [
        sx,
        {
          type: 'ContainerExited',
          correlationId: 'task-exit',
          data: { exitCode: 137, finishedAt: at(90_000), reason: 'OOMKilled', message: 'memory limit 64Mi' },
        },
        90_000,
      ],
    );
    const text = said(events, x.id.slice(0, 8));
    assert.match(text, /^started at 2026-11-28T10:00:02.000Z \(pid 4242\)\.$/m);
    assert.match(
      text,
      /^exited at 2026-11-28T10:03:30.000Z with code 137, reason OOMKilled \(the kernel killed it for using more memory than its limit\): "memory limit 64Mi"\.$/m,
    );
  });

  it('says, for a compensated one, which step failed, the error, what was undone, and who holds the name now', () => {
    const again = container('explain-x2', 'pod1', x.name);
    const compensated: NewEvent<'Compensated'> = {
      type: 'Compensated',
      correlationId: 'req-R',
      data: {
        operation: 'CreateContainer',
        failedStep: 'SnapshotPrepared',
        error: { message: 'snapshotter said no', code: 'Unknown' },
        undone: [
          { step: 'SnapshotPrepared', ok: true, durationMs: 1 },
          { step: 'ContainerRecord', ok: false, error: 'containerd gone', durationMs: 2 },
          { step: 'Directories', ok: true, durationMs: 0.5 },
        ],
        name: x.name,
      },
    };
    const events = log(
      [sx, ev.nameReserved(x, 'req-R'), 0],
      [sx, ev.specGenerated('req-R'), 0],
      [sx, compensated, 500],
      [streams.container(again), ev.nameReserved(again, 'req-R2'), 1_000],
      [streams.container(again), ev.containerCreated(1, 'req-R2'), 1_100],
    );
    const text = said(events, x.id);
    assert.match(
      text,
      /^CreateContainer failed at step SnapshotPrepared at 2026-11-28T10:02:00.500Z: "snapshotter said no" \(code Unknown\)\.$/m,
    );
    assert.match(
      text,
      /^undone, newest first: SnapshotPrepared ok, ContainerRecord FAILED \(containerd gone\), Directories ok; 1 undo\(s\) failed/m,
    );
    assert.match(text, new RegExp(`^the name ${x.name} was released\\.$`, 'm'));
    assert.match(
      text,
      new RegExp(
        `was held by container ${x.id.slice(0, 12)} from ${at(0)} until ${at(500)}, when it was compensated \\(SnapshotPrepared\\); it is now held by container ${again.id.slice(0, 12)} \\(since ${at(1_000)}, request req-R2\\)`,
      ),
    );
    // The name itself resolves to the newest holder, whose sentence names the earlier attempt.
    const newest = said(events, x.name);
    assert.match(newest, new RegExp(`^container ${again.id}$`, 'm'));
    assert.match(
      newest,
      new RegExp(`1 other attempt reserved this name: ${x.id.slice(0, 12)} \\(compensated at SnapshotPrepared\\)`),
    );
  });

  it('says, for one in flight, the step it reached and its age, and a stall that is still going on', () => {
    const events = log(
      [sx, ev.nameReserved(x, 'req-R'), 0],
      [sx, ev.specGenerated('req-R'), 0],
      [sx, stalled('ContainerRecord', 300, 2_000), 2_000],
    );
    const text = said(events, 'app', T0 + 62_000);
    assert.match(text, new RegExp(`(not created yet)`));
    assert.match(
      text,
      /^in flight: CreateContainer \(request req-R\) began at 2026-11-28T10:02:00.000Z and has not ended; the last step recorded is SpecGenerated at 2026-11-28T10:02:00.000Z; age 1m02s\.$/m,
    );
    assert.match(
      text,
      /^stalled in ContainerRecord for 1m00s past the caller's deadline .*, and it is still there\.$/m,
    );
  });

  it('explains a sandbox: ready, stopped, removed', () => {
    const pod = sandbox('explain-pod', 'web_ns_uid-w_0');
    const sp = streams.sandbox(pod);
    const events = log(
      [sp, ev.sandboxReserved(pod), 0],
      [sp, ev.sandboxReady(1), 30],
      [sp, { type: 'SandboxStopped', correlationId: 'req-stop', data: { stoppedAt: at(5_000) } }, 5_000],
      [sp, { type: 'SandboxRemoved', correlationId: 'req-rm', data: { name: pod.name, removedAt: at(6_000) } }, 6_000],
    );
    const text = said(events, 'web');
    assert.match(text, new RegExp(`^sandbox ${pod.id}$`, 'm'));
    assert.match(text, /^ready at .*: pause pid 100, IP 10\.88\.0\.2\.$/m);
    assert.match(text, /^stopped at 2026-11-28T10:02:05.000Z\.$/m);
    assert.match(text, /^removed at 2026-11-28T10:02:06.000Z; the name was released then\.$/m);
    assert.match(text, /when it was removed; nobody holds it now/);
  });
});

describe('explain: resolving the reference', () => {
  const a = container('ra', 'pod1', 'app_pod1_ns_uid-1_0');
  const b = container('rb', 'pod2', 'app_pod2_ns_uid-2_0');
  const c = container('rc', 'pod2', 'db_pod2_ns_uid-2_0');
  const known: Reservation[] = reservations(
    history(
      [streams.container(a), ev.nameReserved(a)],
      [streams.container(b), ev.nameReserved(b)],
      [streams.container(c), ev.nameReserved(c)],
    ),
  );

  it('takes a short metadata name only when one full name has it', () => {
    assert.equal(resolveReference(known, 'db').target.id, c.id);
    assert.throws(
      () => resolveReference(known, 'app'),
      (e: unknown) => e instanceof InvalidArgumentError && /app_pod1_ns_uid-1_0, app_pod2_ns_uid-2_0/.test(e.message),
    );
  });

  it('takes a full name, a full id and a unique id prefix; refuses what it does not know', () => {
    assert.equal(resolveReference(known, b.name).target.id, b.id);
    assert.equal(resolveReference(known, a.id).target.id, a.id);
    assert.equal(resolveReference(known, c.id.slice(0, 6)).target.id, c.id);
    assert.throws(() => resolveReference(known, 'nobody'), NotFoundError);
  });
});

describe('explain, for results no caller got', () => {
  it('says the result was never delivered, why, and that the service removed it when another request came', () => {
    const events = log(
      [sx, ev.nameReserved(x, 'req-R'), 0],
      [sx, ev.specGenerated('req-R'), 0],
      [sx, ev.snapshotPrepared(x, 'req-R'), 3_000],
      [sx, ev.containerCreated(1, 'req-R'), 3_000],
      [
        sx,
        {
          type: 'ResultUndelivered',
          correlationId: 'req-R',
          data: {
            name: x.name,
            requestDigest: `sha256:${'a'.repeat(64)}`,
            reason: 'deadline',
            gaveUpAt: at(2_000),
            callerDeadline: at(2_000),
          },
        },
        3_000,
      ],
      [
        sx,
        {
          type: 'ContainerRemoved',
          correlationId: 'req-S',
          data: {
            name: x.name,
            removedAt: at(9_000),
            discarded: {
              reason: 'superseded',
              message: 'replaced',
              supersededBy: `sha256:${'b'.repeat(64)}`,
              undone: [
                { step: 'SnapshotPrepared', ok: true },
                { step: 'ContainerRecord', ok: false, error: 'gone' },
              ],
            },
          },
        },
        9_000,
      ],
    );
    const text = said(events, x.id);
    assert.match(
      text,
      new RegExp(
        `^the result never reached a caller \\(the caller's deadline ${at(2_000).replace(/\./g, '\\.')} passed, `,
        'm',
      ),
    );
    assert.match(
      text,
      /^removed by the service at .*, never delivered: a request with another digest \(sha256:b{64}\) came for the name; undone: SnapshotPrepared ok, ContainerRecord FAILED \(gone\); the name was released then\.$/m,
    );
  });

  it('says what startup recovery decided and why', () => {
    const events = log(
      [sx, ev.nameReserved(x, 'req-R'), 0],
      [sx, ev.specGenerated('req-R'), 0],
      [
        sx,
        {
          type: 'RecoveryDecided',
          correlationId: 'recovery',
          data: {
            operation: 'CreateContainer',
            decision: 'rollForward',
            reason: 'containerd holds the recorded spec and the snapshot',
            lastStep: 'SpecGenerated',
          },
        },
        60_000,
      ],
      [sx, ev.snapshotPrepared(x, 'recovery'), 60_000],
      [sx, ev.containerCreated(1, 'recovery'), 60_000],
      [
        sx,
        {
          type: 'ResultUndelivered',
          correlationId: 'recovery',
          data: { name: x.name, requestDigest: `sha256:${'a'.repeat(64)}`, reason: 'recovery', gaveUpAt: at(60_000) },
        },
        60_000,
      ],
    );
    const text = said(events, x.name);
    assert.match(
      text,
      /^startup recovery at .* found CreateContainer stopped after SpecGenerated and decided to roll it forward: containerd holds the recorded spec and the snapshot\.$/m,
    );
    assert.match(
      text,
      /^the result never reached a caller \(it was rolled forward at startup, with no caller waiting, /m,
    );
    assert.doesNotMatch(text, /^removed/m);
  });
});
