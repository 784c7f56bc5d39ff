import { createHash } from 'node:crypto';
import type { NewEvent } from '../../src/domain/events.js';
import { containerStream, sandboxStream } from '../../src/domain/ids.js';

/** A deterministic 64-hex id derived from a label, so tests read `hexId('c1')`. */
export function hexId(label: string): string {
  return createHash('sha256').update(label).digest('hex');
}

export function digest(label: string): string {
  return `sha256:${hexId(`digest-${label}`)}`;
}

const T0 = Date.parse('2026-11-28T10:00:00.000Z');
/** A fixed time `seconds` after a fixed origin, ISO 8601. */
export function time(seconds = 0): string {
  return new Date(T0 + seconds * 1000).toISOString();
}

const CORRELATION = 'req-1';

export interface ContainerRef {
  id: string;
  sandboxId: string;
  name: string;
}

export function container(
  label: string,
  sandboxLabel = 'pod1',
  name = `${label}_${sandboxLabel}_default_uid-${sandboxLabel}_0`,
): ContainerRef {
  return { id: hexId(label), sandboxId: hexId(sandboxLabel), name };
}

export function sandbox(label: string, name = `${label}_default_uid-${label}_0`): { id: string; name: string } {
  return { id: hexId(label), name };
}

export const ev = {
  nameReserved(c: ContainerRef, correlationId = CORRELATION): NewEvent<'NameReserved'> {
    return {
      type: 'NameReserved',
      correlationId,
      data: {
        containerId: c.id,
        sandboxId: c.sandboxId,
        name: c.name,
        metadata: { name: c.name.split('_')[0]!, attempt: 0 },
        requestDigest: digest(c.name),
        image: 'docker.io/library/busybox:latest',
      },
    };
  },
  specGenerated(correlationId = CORRELATION): NewEvent<'SpecGenerated'> {
    return {
      type: 'SpecGenerated',
      correlationId,
      data: {
        spec: { ociVersion: '1.0.2', process: { args: ['sh', '-c', 'echo hi'] } },
        specDigest: digest('spec'),
        runtimeHandler: 'runc',
        imageRef: digest('image'),
      },
    };
  },
  snapshotPrepared(c: ContainerRef, correlationId = CORRELATION): NewEvent<'SnapshotPrepared'> {
    return {
      type: 'SnapshotPrepared',
      correlationId,
      data: { snapshotter: 'overlayfs', key: c.id, parent: digest('chain') },
    };
  },
  containerCreated(seconds = 1, correlationId = CORRELATION): NewEvent<'ContainerCreated'> {
    return {
      type: 'ContainerCreated',
      correlationId,
      data: {
        createdAt: time(seconds),
        imageRef: digest('image'),
        logPath: '/var/log/pods/c.log',
        labels: { app: 'x' },
        annotations: {},
      },
    };
  },
  compensated(
    name: string | undefined,
    failedStep = 'SnapshotPrepared',
    correlationId = CORRELATION,
  ): NewEvent<'Compensated'> {
    return {
      type: 'Compensated',
      correlationId,
      data: {
        operation: name?.split('_').length === 5 ? 'CreateContainer' : 'RunPodSandbox',
        failedStep,
        error: { message: 'snapshotter said no', code: 'Unknown' },
        undone: [{ step: 'NameReserved', ok: true, durationMs: 0.1 }],
        ...(name === undefined ? {} : { name }),
      },
    };
  },
  containerStarted(seconds = 2): NewEvent<'ContainerStarted'> {
    return { type: 'ContainerStarted', correlationId: 'req-start', data: { pid: 4242, startedAt: time(seconds) } };
  },
  containerExited(exitCode = 0, seconds = 3): NewEvent<'ContainerExited'> {
    return {
      type: 'ContainerExited',
      correlationId: 'task-exit',
      data: { exitCode, finishedAt: time(seconds), reason: exitCode === 0 ? 'Completed' : 'Error', message: '' },
    };
  },
  containerStopped(seconds = 3): NewEvent<'ContainerStopped'> {
    return {
      type: 'ContainerStopped',
      correlationId: 'req-stop',
      data: { signal: 'SIGTERM', timeoutMs: 10_000, killed: false, stoppedAt: time(seconds) },
    };
  },
  containerRemoved(c: ContainerRef, seconds = 4): NewEvent<'ContainerRemoved'> {
    return { type: 'ContainerRemoved', correlationId: 'req-rm', data: { name: c.name, removedAt: time(seconds) } };
  },
  sandboxReserved(s: { id: string; name: string }, correlationId = 'req-pod'): NewEvent<'SandboxReserved'> {
    const [name, namespace, uid, attempt] = s.name.split('_');
    return {
      type: 'SandboxReserved',
      correlationId,
      data: {
        sandboxId: s.id,
        name: s.name,
        metadata: { name: name!, namespace: namespace ?? 'default', uid: uid ?? 'uid', attempt: Number(attempt ?? 0) },
        requestDigest: digest(s.name),
        runtimeHandler: '',
        hostNetwork: false,
        labels: {},
        annotations: {},
        portMappings: [],
      },
    };
  },
  sandboxReady(seconds = 1): NewEvent<'SandboxReady'> {
    return {
      type: 'SandboxReady',
      correlationId: 'req-pod',
      data: { createdAt: time(seconds), pid: 100, ip: '10.88.0.2', additionalIps: [], netnsPath: '/run/netns/x' },
    };
  },
  sandboxStopped(seconds = 5): NewEvent<'SandboxStopped'> {
    return { type: 'SandboxStopped', correlationId: 'req-stoppod', data: { stoppedAt: time(seconds) } };
  },
  sandboxRemoved(s: { name: string }, seconds = 6): NewEvent<'SandboxRemoved'> {
    return { type: 'SandboxRemoved', correlationId: 'req-rmpod', data: { name: s.name, removedAt: time(seconds) } };
  },
  execStarted(sessionId: string, cmd = ['sh', '-c', 'ls /'], seconds = 2.5): NewEvent<'ExecStarted'> {
    return {
      type: 'ExecStarted',
      correlationId: `req-exec-${sessionId}`,
      data: {
        sessionId,
        cmd,
        tty: false,
        streams: { stdin: false, stdout: true, stderr: true },
        transport: 'spdy',
        protocol: 'v4.channel.k8s.io',
        startedAt: time(seconds),
      },
    };
  },
  execEnded(sessionId: string, exitCode = 0, seconds = 2.75): NewEvent<'ExecEnded'> {
    return {
      type: 'ExecEnded',
      correlationId: `req-exec-${sessionId}`,
      data: {
        sessionId,
        reason: 'exited',
        exitCode,
        bytesIn: 0,
        bytesOut: 42,
        endedAt: time(seconds),
        durationMs: 250,
      },
    };
  },
  portForwardStarted(sessionId: string, ports = [8080], seconds = 1.5): NewEvent<'PortForwardStarted'> {
    return {
      type: 'PortForwardStarted',
      correlationId: `req-pf-${sessionId}`,
      data: { sessionId, ports, transport: 'websocket', protocol: 'portforward.k8s.io', startedAt: time(seconds) },
    };
  },
  portForwardEnded(sessionId: string, ports = [8080], seconds = 2): NewEvent<'PortForwardEnded'> {
    return {
      type: 'PortForwardEnded',
      correlationId: `req-pf-${sessionId}`,
      data: {
        sessionId,
        reason: 'client-gone',
        ports: ports.map((port) => ({ port, connections: 1, errors: 0, bytesIn: 10, bytesOut: 20 })),
        bytesIn: 10 * ports.length,
        bytesOut: 20 * ports.length,
        endedAt: time(seconds),
        durationMs: 500,
      },
    };
  },
};

/** The streams a container's and a sandbox's events go to. */
export const streams = {
  container: (c: ContainerRef) => containerStream(c.id),
  sandbox: (s: { id: string }) => sandboxStream(s.id),
};
