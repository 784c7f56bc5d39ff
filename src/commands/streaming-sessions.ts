import { z } from 'zod';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, NotImplementedError } from '../domain/errors.js';
import { freeText, plainText } from '../domain/text.js';
import type { ContainerRecord } from '../projections/container-store.js';
import type { Projections } from '../projections/projections.js';
import type { SandboxRecord } from '../projections/sandbox-store.js';
import type {
  AttachSessionPayload,
  ExecSessionPayload,
  PortForwardSessionPayload,
  StreamingSessions,
} from './ports.js';

export { recordSessionEnded, recordSessionStarted } from './session-records.js';

/*
 * Exec, Attach and PortForward, the CRI calls that hand out a streaming URL:
 *
 *   validate the request (shape, then the container or sandbox and its state)
 *   -> the session payload -> StreamingSessions.register() -> the URL
 *
 * Nothing is written here: a URL nobody uses is no session. The session itself is
 * recorded when a client connects (recordSessionStarted, src/commands/session-records.ts)
 * and when it ends. Every refusal happens before the URL exists, so a bad request has no
 * side effect at all.
 */

export interface StreamingDeps {
  projections: Projections;
  /** The streaming server; absent until it is configured (the calls then answer UNIMPLEMENTED after validating). */
  streaming?: StreamingSessions;
}

/** What each call takes from the edge besides the request: a fresh session id and the call's correlation id. */
export interface SessionCall {
  sessionId: string;
  correlationId: string;
}

const STREAM_FLAGS = {
  tty: z.boolean().default(false),
  stdin: z.boolean().default(false),
  stdout: z.boolean().default(false),
  stderr: z.boolean().default(false),
  auditRequestId: z.string().default(''),
};

/** The CRI ExecRequest, as the CRI server decodes it. */
export const ExecRequest = z.object({ containerId: z.string(), cmd: z.array(z.string()).default([]), ...STREAM_FLAGS });
export type ExecRequest = z.input<typeof ExecRequest>;

/** The CRI AttachRequest. */
export const AttachRequest = z.object({ containerId: z.string(), ...STREAM_FLAGS });
export type AttachRequest = z.input<typeof AttachRequest>;

/** The CRI PortForwardRequest (`port` is repeated int32). */
export const PortForwardRequest = z.object({ podSandboxId: z.string(), port: z.array(z.number()).default([]) });
export type PortForwardRequest = z.input<typeof PortForwardRequest>;

function parse<T extends z.ZodType>(schema: T, request: unknown): z.output<T> {
  const parsed = schema.safeParse(request);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidArgumentError(issue.path.join('.') || 'request', issue.message);
  }
  return parsed.data;
}

/** A terminal has one output stream, and a session with no stream has nothing to carry (kubelet's rules). */
function checkStreams(r: { tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }): void {
  if (!r.stdin && !r.stdout && !r.stderr)
    throw new InvalidArgumentError('stdin, stdout, stderr', 'at least one of them must be true');
  if (r.tty && r.stderr)
    throw new InvalidArgumentError('stderr', 'must be false when tty is true: a terminal has one output stream');
}

/** The container, RUNNING; NOT_FOUND for an unknown one (or one still being created), FAILED_PRECONDITION naming its state. */
export function runningContainer(projections: Projections, ref: string, what: string): ContainerRecord {
  if (ref.length === 0) throw new InvalidArgumentError('container_id', 'must be set');
  const c = projections.findContainer(ref);
  if (!c || c.state === 'CREATING') throw new NotFoundError('container', ref);
  if (c.state !== 'RUNNING') throw new FailedPreconditionError(`container ${c.id} is ${c.state}, not RUNNING: ${what}`);
  return c;
}

/** Checks an Exec request against the request rules and the container store; returns the container and the request. */
export function validateExec(projections: Projections, request: ExecRequest) {
  const r = parse(ExecRequest, request);
  plainText(r.auditRequestId, 'audit_request_id');
  if (r.cmd.length === 0) throw new InvalidArgumentError('cmd', 'must name a command');
  if (r.cmd[0]!.length === 0) throw new InvalidArgumentError('cmd[0]', 'must not be empty');
  r.cmd.forEach((arg, i) => freeText(arg, `cmd[${i}]`));
  checkStreams(r);
  const container = runningContainer(projections, r.containerId, 'a command can only run in a running container');
  return { container, request: r };
}

/**
 * Checks an Attach request. The container's own stdio is what is attached to, so stdin
 * needs a container created with stdin, and tty one created with tty.
 */
export function validateAttach(projections: Projections, request: AttachRequest) {
  const r = parse(AttachRequest, request);
  plainText(r.auditRequestId, 'audit_request_id');
  checkStreams(r);
  const container = runningContainer(projections, r.containerId, 'only a running container can be attached to');
  if (r.stdin && !container.stdin)
    throw new FailedPreconditionError(
      `container ${container.id} was not created with stdin: there is no stdin to attach to`,
    );
  if (r.tty && !container.tty)
    throw new FailedPreconditionError(`container ${container.id} was not created with tty: there is no terminal`);
  return { container, request: r };
}

/** Checks a PortForward request: the sandbox exists and is READY, every port is 1-65535. */
export function validatePortForward(projections: Projections, request: PortForwardRequest) {
  const r = parse(PortForwardRequest, request);
  if (r.podSandboxId.length === 0) throw new InvalidArgumentError('pod_sandbox_id', 'must be set');
  r.port.forEach((port, i) => {
    if (!Number.isInteger(port) || port < 1 || port > 65_535)
      throw new InvalidArgumentError(`port[${i}]`, `${port} is not a port (1-65535)`);
  });
  const sandbox: SandboxRecord | undefined = projections.findSandbox(r.podSandboxId);
  if (!sandbox || sandbox.state === 'CREATING') throw new NotFoundError('sandbox', r.podSandboxId);
  if (sandbox.state !== 'READY')
    throw new FailedPreconditionError(
      `sandbox ${sandbox.id} is ${sandbox.state}, not READY: its network is gone, nothing can be forwarded to it`,
    );
  return { sandbox, ports: [...new Set(r.port)] };
}

function server(deps: StreamingDeps, rpc: string): StreamingSessions {
  if (!deps.streaming) throw new NotImplementedError(`${rpc} (no streaming server is configured)`);
  return deps.streaming;
}

/** CRI Exec: validates, then registers the session; returns its URL. */
export function exec(deps: StreamingDeps, o: SessionCall & { request: ExecRequest }): string {
  const { container, request } = validateExec(deps.projections, o.request);
  const payload: ExecSessionPayload = {
    kind: 'exec',
    sessionId: o.sessionId,
    correlationId: o.correlationId,
    containerId: container.id,
    cmd: request.cmd,
    tty: request.tty,
    stdin: request.stdin,
    stdout: request.stdout,
    stderr: request.stderr,
    auditRequestId: request.auditRequestId,
  };
  return server(deps, 'Exec').register('exec', payload);
}

/** CRI Attach: validates, then registers the session with the container's tty and stdin-once; returns its URL. */
export function attach(deps: StreamingDeps, o: SessionCall & { request: AttachRequest }): string {
  const { container, request } = validateAttach(deps.projections, o.request);
  const tty = container.tty ?? false;
  const payload: AttachSessionPayload = {
    kind: 'attach',
    sessionId: o.sessionId,
    correlationId: o.correlationId,
    containerId: container.id,
    tty,
    stdin: request.stdin,
    stdout: request.stdout,
    // A terminal merges stderr into stdout: there is no second stream to attach.
    stderr: request.stderr && !tty,
    stdinOnce: container.stdinOnce ?? false,
    auditRequestId: request.auditRequestId,
  };
  return server(deps, 'Attach').register('attach', payload);
}

/** CRI PortForward: validates, then registers the session with the pod's network namespace; returns its URL. */
export function portForward(deps: StreamingDeps, o: SessionCall & { request: PortForwardRequest }): string {
  const { sandbox, ports } = validatePortForward(deps.projections, o.request);
  const payload: PortForwardSessionPayload = {
    kind: 'portforward',
    sessionId: o.sessionId,
    correlationId: o.correlationId,
    sandboxId: sandbox.id,
    ports,
    netnsPath: sandbox.hostNetwork ? '' : (sandbox.netnsPath ?? ''),
    hostNetwork: sandbox.hostNetwork,
  };
  return server(deps, 'PortForward').register('portforward', payload);
}
