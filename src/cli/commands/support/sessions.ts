import type { LedgerEvent } from '../../../domain/events.js';
import { formatBytes } from './summary.js';
import { formatDuration } from './time.js';

/*
 * The streaming sessions of one container or sandbox, paired start with end, for
 * `timeline` and `explain`: who ran what (the CRI call's correlation id, the API
 * server's audit id when kubelet passed one), with a terminal or not, when, for how
 * long, how it ended, and the bytes each way. Pure, like the explanation.
 */

export interface SessionStory {
  sessionId: string;
  kind: 'exec' | 'attach' | 'portforward';
  correlationId: string;
  auditRequestId?: string;
  cmd?: string[];
  tty?: boolean;
  streams?: string;
  ports?: number[];
  transport: string;
  protocol: string;
  startedAt: string;
  startedSeq: number;
  end?: {
    reason: string;
    exitCode?: number;
    bytesIn?: number;
    bytesOut?: number;
    error?: string;
    endedAt: string;
    durationMs: number;
    seq: number;
    /** Port forward: per port, `8080: 2 connections, 1.2KiB in, 3.0MiB out`. */
    ports?: string[];
  };
}

function streamsOf(s: { stdin: boolean; stdout: boolean; stderr: boolean }): string {
  return (['stdin', 'stdout', 'stderr'] as const).filter((k) => s[k]).join('+');
}

/** Pairs each session's start with its end, in start order; an end without a start (trimmed log) is dropped. */
export function sessionStories(events: Iterable<LedgerEvent>): SessionStory[] {
  const byId = new Map<string, SessionStory>();
  for (const e of events) {
    switch (e.type) {
      case 'ExecStarted':
      case 'AttachStarted':
      case 'PortForwardStarted': {
        const d = e.data;
        const story: SessionStory = {
          sessionId: d.sessionId,
          kind: e.type === 'ExecStarted' ? 'exec' : e.type === 'AttachStarted' ? 'attach' : 'portforward',
          correlationId: e.correlationId,
          transport: d.transport,
          protocol: d.protocol,
          startedAt: d.startedAt,
          startedSeq: e.seq,
        };
        if ('cmd' in d) story.cmd = d.cmd;
        if ('tty' in d) story.tty = d.tty;
        if ('streams' in d) story.streams = streamsOf(d.streams);
        if ('ports' in d) story.ports = d.ports;
        if ('auditRequestId' in d && d.auditRequestId) story.auditRequestId = d.auditRequestId;
        if (!byId.has(d.sessionId)) byId.set(d.sessionId, story);
        break;
      }
      case 'ExecEnded':
      case 'AttachEnded':
      case 'PortForwardEnded': {
        const story = byId.get(e.data.sessionId);
        if (!story || story.end) break;
        const d = e.data;
        story.end = { reason: d.reason, endedAt: d.endedAt, durationMs: d.durationMs, seq: e.seq };
        if ('exitCode' in d && d.exitCode !== undefined) story.end.exitCode = d.exitCode;
        if (d.bytesIn !== undefined) story.end.bytesIn = d.bytesIn;
        if (d.bytesOut !== undefined) story.end.bytesOut = d.bytesOut;
        if (d.error) story.end.error = d.error;
        if ('ports' in d)
          story.end.ports = d.ports.map(
            (p) =>
              `${p.port}: ${p.connections} ${p.connections === 1 ? 'connection' : 'connections'}${p.errors > 0 ? ` (${p.errors} failed)` : ''}, ${formatBytes(p.bytesIn)} in, ${formatBytes(p.bytesOut)} out`,
          );
        break;
      }
      default:
        break;
    }
  }
  return [...byId.values()].sort((a, b) => a.startedSeq - b.startedSeq);
}

/** What a session did: the command (quoted as argv), or the ports. */
export function sessionWhat(s: SessionStory): string {
  if (s.cmd) return s.cmd.map((a) => (/^[\w./:=@%+-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  if (s.kind === 'attach') return '(attach to the container)';
  return s.ports && s.ports.length > 0 ? `ports ${s.ports.join(', ')}` : 'any port';
}

/** How a session ended, in a few words: `exit 0`, `client-gone`, or `still open`. */
export function sessionOutcome(s: SessionStory): string {
  const e = s.end;
  if (!e) return 'still open';
  if (e.reason === 'exited' && e.exitCode !== undefined) return `exit ${e.exitCode}`;
  return e.exitCode === undefined ? e.reason : `${e.reason}, exit ${e.exitCode}`;
}

function bytes(s: SessionStory): string {
  const e = s.end;
  if (!e || (e.bytesIn === undefined && e.bytesOut === undefined)) return '-';
  return `${formatBytes(e.bytesIn ?? 0)} in, ${formatBytes(e.bytesOut ?? 0)} out`;
}

/** Rows for the timeline's session table: SESSION, KIND, CORRELATION, STARTED, DURATION, OUTCOME, BYTES, WHAT. */
export function sessionRows(stories: readonly SessionStory[], nowMs: number): string[][] {
  return stories.map((s) => [
    s.sessionId,
    `${s.kind}${s.tty ? ' tty' : ''}`,
    s.correlationId,
    s.startedAt,
    s.end ? formatDuration(s.end.durationMs) : `${formatDuration(Math.max(0, nowMs - Date.parse(s.startedAt)))}+`,
    sessionOutcome(s),
    bytes(s),
    sessionWhat(s),
  ]);
}

/** One sentence per session, for `explain`. */
export function sessionSentences(stories: readonly SessionStory[], nowMs: number): string[] {
  return stories.map((s) => {
    const who = `request ${s.correlationId}${s.auditRequestId ? `, API server audit id ${s.auditRequestId}` : ''}`;
    const how = [
      s.tty ? 'with a terminal' : '',
      s.streams ? `streams ${s.streams}` : '',
      `over ${s.transport}${s.protocol ? ` (${s.protocol})` : ''}`,
    ]
      .filter(Boolean)
      .join(', ');
    const head =
      s.kind === 'exec'
        ? `exec session ${s.sessionId} (${who}) ran ${sessionWhat(s)} ${how}`
        : s.kind === 'attach'
          ? `attach session ${s.sessionId} (${who}) attached ${how}`
          : `port-forward session ${s.sessionId} (${who}) forwarded ${sessionWhat(s)} ${how}`;
    const e = s.end;
    if (!e) {
      const age = formatDuration(Math.max(0, nowMs - Date.parse(s.startedAt)));
      return `${head}; started at ${s.startedAt} and is still open (${age}).`;
    }
    const counted = bytes(s) === '-' ? 'bytes not counted' : bytes(s);
    const perPort = e.ports && e.ports.length > 0 ? ` (${e.ports.join('; ')})` : '';
    const error = e.error ? `: ${JSON.stringify(e.error)}` : '';
    return `${head}, from ${s.startedAt} to ${e.endedAt} (${formatDuration(e.durationMs)}); ended ${sessionOutcome(s)}${error}; ${counted}${perPort}.`;
  });
}
