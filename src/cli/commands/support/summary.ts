import { assertNever, type LedgerEvent } from '../../../domain/events.js';
import { isResourceId } from '../../../domain/ids.js';
import { formatDuration } from './time.js';

/** How many characters of a 64-hex id people are shown (crictl shows 13; 12 reads as 3 x 4). */
export const SHORT_ID_LENGTH = 12;

export function shortId(id: string): string {
  return isResourceId(id) ? id.slice(0, SHORT_ID_LENGTH) : id;
}

/** `container-3f2a1b4c5d6e` for `container-<64 hex>`; image streams are kept whole. */
export function shortStream(stream: string): string {
  const dash = stream.indexOf('-');
  return dash < 0 ? stream : `${stream.slice(0, dash + 1)}${shortId(stream.slice(dash + 1))}`;
}

function quote(text: string): string {
  return /[\s"]/.test(text) ? JSON.stringify(text) : text;
}

/** A one-line, per-type summary of what an event says, for tables. */
export function summarize(event: LedgerEvent): string {
  switch (event.type) {
    case 'NameReserved':
      return `name=${event.data.name} image=${event.data.image} sandbox=${shortId(event.data.sandboxId)}`;
    case 'SpecGenerated':
      return `handler=${event.data.runtimeHandler || '(default)'} image=${event.data.imageRef.slice(0, 19)}`;
    case 'SnapshotPrepared':
      return `snapshotter=${event.data.snapshotter} key=${shortId(event.data.key)}`;
    case 'ContainerCreated':
      return `image=${event.data.imageRef.slice(0, 19)} log=${event.data.logPath}`;
    case 'Compensated': {
      const failed = event.data.undone.filter((u) => !u.ok).length;
      return (
        `${event.data.operation} failed at ${event.data.failedStep}: ${quote(event.data.error.message)}; ` +
        `undid ${event.data.undone.length}${failed > 0 ? ` (${failed} failed)` : ''}`
      );
    }
    case 'SandboxReserved':
      return `name=${event.data.name}${event.data.runtimeHandler ? ` handler=${event.data.runtimeHandler}` : ''}${event.data.hostNetwork ? ' hostNetwork' : ''}`;
    case 'SandboxReady':
      return `ip=${event.data.ip || '-'} pid=${event.data.pid}`;
    case 'SandboxStopped':
      return `stopped=${event.data.stoppedAt}`;
    case 'SandboxRemoved':
      return `name=${event.data.name}${event.data.discarded ? ` (${event.data.discarded.reason}, never delivered)` : ''}`;
    case 'ContainerStarted':
      return `pid=${event.data.pid}`;
    case 'ContainerExited':
      return `exit=${event.data.exitCode} reason=${event.data.reason}${event.data.message ? ` ${quote(event.data.message)}` : ''}`;
    case 'ContainerStopped':
      return `signal=${event.data.signal} timeout=${event.data.timeoutMs}ms${event.data.killed ? ' killed' : ''}`;
    case 'ContainerRemoved':
      return `name=${event.data.name}${event.data.discarded ? ` (${event.data.discarded.reason}, never delivered)` : ''}`;
    case 'ImagePullStarted':
      return `reference=${event.data.reference} from ${event.data.origin}`;
    case 'ImagePullProgress':
      return `layer=${event.data.layer.slice(0, 19)} ${event.data.done}/${event.data.total} bytes`;
    case 'ImagePulled':
      return `id=${event.data.imageId.slice(0, 19)} size=${event.data.size} ${event.data.durationMs}ms layers=${event.data.layers.length} (${event.data.layers.filter((l) => l.skipped).length} present)`;
    case 'ImagePullFailed':
      return `reason=${quote(event.data.reason)}`;
    case 'ImageRemoved':
      return `reference=${event.data.reference} id=${event.data.imageId.slice(0, 19)}`;
    case 'RetryServed':
      return `request=${event.data.requestDigest.slice(0, 19)} answered with this id`;
    case 'HostPathCreated':
      return `made ${event.data.created.join(', ')} (mode ${event.data.mode}) for ${event.data.field}`;
    case 'ExecRan':
      return `cmd=${quote(event.data.cmd.join(' '))} ${event.data.timedOut ? 'timed out' : `exit=${event.data.exitCode}`} ${event.data.durationMs}ms`;
    case 'ContainerResourcesUpdated':
      return `memory=${event.data.resources.memoryLimitInBytes} cpu_quota=${event.data.resources.cpuQuota} cpu_shares=${event.data.resources.cpuShares}`;
    case 'RuntimeReconciled':
      return `orphans removed=${event.data.orphansRemoved.length} missing=${event.data.missing.length}`;
    case 'PodCidrUpdated':
      return `podCidr=${event.data.podCidr || '-'}`;
    case 'OperationStalled':
      return `${event.data.operation} still in ${event.data.step} at the caller's deadline ${event.data.deadline} (${formatDuration(event.data.elapsedMs)} into the step)`;
    case 'ResultUndelivered':
      return `${event.data.reason}: the id reached no caller (request=${event.data.requestDigest.slice(0, 19)})`;
    case 'RecoveryDecided':
      return `${event.data.decision} at ${event.data.lastStep}: ${quote(event.data.reason)}`;
    case 'ExecStarted':
      return `session=${event.data.sessionId} cmd=${quote(event.data.cmd.join(' '))} ${sessionStart(event.data)}`;
    case 'AttachStarted':
      return `session=${event.data.sessionId} ${sessionStart(event.data)}`;
    case 'PortForwardStarted':
      return `session=${event.data.sessionId} ports=${event.data.ports.join(',') || 'any'} ${event.data.transport}`;
    case 'ExecEnded':
    case 'AttachEnded':
    case 'PortForwardEnded':
      return `session=${event.data.sessionId} ${sessionEnd(event.data)}`;
    default:
      return assertNever(event);
  }
}

function sessionStart(d: {
  tty: boolean;
  streams: { stdin: boolean; stdout: boolean; stderr: boolean };
  transport: string;
  protocol: string;
}): string {
  const streams = (['stdin', 'stdout', 'stderr'] as const).filter((s) => d.streams[s]).join('+') || 'none';
  return `${d.tty ? 'tty ' : ''}streams=${streams} ${d.transport}${d.protocol ? `/${d.protocol}` : ''}`;
}

/** `exited exit=0 in=12B out=3.4KiB 2.1s`: how a session ended and what went through it. */
export function sessionEnd(d: {
  reason: string;
  exitCode?: number | undefined;
  bytesIn?: number | undefined;
  bytesOut?: number | undefined;
  error?: string | undefined;
  durationMs: number;
}): string {
  const parts = [d.reason];
  if (d.exitCode !== undefined) parts.push(`exit=${d.exitCode}`);
  if (d.bytesIn !== undefined || d.bytesOut !== undefined)
    parts.push(`in=${formatBytes(d.bytesIn ?? 0)} out=${formatBytes(d.bytesOut ?? 0)}`);
  parts.push(formatDuration(d.durationMs));
  if (d.error) parts.push(`error=${quote(d.error)}`);
  return parts.join(' ');
}

/** Bytes as people read them: `512B`, `3.4KiB`, `1.2GiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n}B` : `${value.toFixed(1)}${units[unit]}`;
}
