import { InvalidArgumentError } from './errors.js';

/*
 * Strings from a request that end up in file names, containerd labels, process
 * environments and our own log lines. Control bytes are refused where they could split
 * one value into two (a newline in a name or a label key, CVE-2022-4318's HOME), and
 * NUL everywhere: no kernel interface can carry it. The checks run before anything is
 * written, and name the field.
 */

// oxlint-disable-next-line no-control-regex -- refusing control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;
// oxlint-disable-next-line no-control-regex -- refusing NUL is the point
const NUL = /\u0000/;

/** Names, keys and ids: no control bytes at all. */
export function plainText(value: string, field: string): string {
  if (CONTROL.test(value)) throw new InvalidArgumentError(field, `contains a control character (${describe(value)})`);
  return value;
}

/** Free text (label, annotation and env values): anything but NUL. */
export function freeText(value: string, field: string): string {
  if (NUL.test(value)) throw new InvalidArgumentError(field, 'contains a NUL byte');
  return value;
}

/** Each key plain, each value free text. */
export function textMap(map: Record<string, string>, field: string): Record<string, string> {
  for (const [key, value] of Object.entries(map)) {
    plainText(key, `${field} key`);
    freeText(value, `${field}[${JSON.stringify(key)}]`);
  }
  return map;
}

/** containerd's limit on one label, key and value together (its `labels.Validate`). */
export const MAX_LABEL_BYTES = 4096;

/**
 * Labels, which become containerd labels: a textMap whose keys are not empty and whose
 * key and value together fit containerd's limit. containerd refuses either when the
 * container record is written, after the request's first events.
 */
export function labelMap(map: Record<string, string>, field: string): Record<string, string> {
  for (const [key, value] of Object.entries(map)) {
    if (key.length === 0) throw new InvalidArgumentError(`${field} key`, 'is empty');
    const bytes = Buffer.byteLength(key) + Buffer.byteLength(value);
    if (bytes > MAX_LABEL_BYTES)
      throw new InvalidArgumentError(
        `${field}[${JSON.stringify(key.slice(0, 64))}]`,
        `key and value are ${bytes} bytes; containerd takes at most ${MAX_LABEL_BYTES}`,
      );
  }
  return textMap(map, field);
}

/** An environment variable: a non-empty key without `=` or control bytes; any value but NUL. */
export function envVar(key: string, value: string, field: string): void {
  if (key.length === 0) throw new InvalidArgumentError(`${field}.key`, 'is empty');
  if (key.includes('=')) throw new InvalidArgumentError(`${field}.key`, `"${key}" contains "="`);
  plainText(key, `${field}.key`);
  freeText(value, `${field}.value`);
}

/**
 * A path on the host or in the container, from a request: absolute, with no `..`
 * component and no control byte. `..` is refused rather than cleaned: a request that
 * spells a way out of a directory is not trusted to mean something harmless by it.
 */
export function absolutePath(value: string, field: string): string {
  plainText(value, field);
  if (!value.startsWith('/')) throw new InvalidArgumentError(field, `"${value}" is not absolute`);
  if (value.split('/').includes('..')) throw new InvalidArgumentError(field, `"${value}" contains a ".." component`);
  return value;
}

const SYSCTL_KEY = /^[a-z0-9]([a-z0-9_./-]*[a-z0-9_])?$/i;

/**
 * Sysctls: a key of the names the kernel uses, and a value that is one plain value.
 * A value carrying a separator (`+`, `;`, `,`), a second assignment (`=`) or a control
 * byte is refused: CRI-O's CVE-2022-0811 set kernel.core_pattern through one.
 */
export function sysctls(map: Record<string, string>, field: string): Record<string, string> {
  for (const [key, value] of Object.entries(map)) {
    if (!SYSCTL_KEY.test(key)) throw new InvalidArgumentError(`${field} key`, `"${key}" is not a sysctl name`);
    // oxlint-disable-next-line no-control-regex -- refusing control characters is the point
    if (/[+;,=\u0000-\u001f\u007f]/.test(value))
      throw new InvalidArgumentError(
        `${field}[${JSON.stringify(key)}]`,
        `"${value}" is not one plain value (a separator, "=" or a control character)`,
      );
  }
  return map;
}

const SHIM_RUNTIME = /^io\.containerd\.[a-z0-9_]+\.v[0-9]+$/;

/**
 * A runtime handler: empty (the default runtime) or a containerd shim name
 * (`io.containerd.runc.v2`). containerd also takes an absolute path and runs that
 * binary as the shim, as root: a RunPodSandbox must never choose a program to run that
 * way. Other names would fail only at task creation, after the pod's name, files and
 * containerd record exist.
 */
export function runtimeHandler(value: string, field: string): string {
  if (value !== '' && !SHIM_RUNTIME.test(value)) {
    throw new InvalidArgumentError(
      field,
      `"${value}" is not a runtime this service runs: leave it empty or name a containerd shim (io.containerd.<name>.v<N>)`,
    );
  }
  return value;
}

const IPC_SYSCTLS = new Set([
  'kernel.msgmax',
  'kernel.msgmnb',
  'kernel.msgmni',
  'kernel.sem',
  'kernel.shmall',
  'kernel.shmmax',
  'kernel.shmmni',
  'kernel.shm_rmid_forced',
]);

/**
 * Sysctls the pod's own namespaces hold, as runc allows them: the IPC ones (and
 * `fs.mqueue.*`) unless the pod shares the host's IPC namespace, `net.*` unless it
 * shares the host's network. Anything else would change the host for every pod; runc
 * refuses it only when the task starts, after the pod's name, files and containerd
 * record exist. Refused here, it writes nothing.
 */
export function namespacedSysctls(
  map: Record<string, string>,
  field: string,
  host: { network: boolean; ipc: boolean },
): void {
  for (const key of Object.keys(map)) {
    const name = key.replaceAll('/', '.');
    const ipc = IPC_SYSCTLS.has(name) || name.startsWith('fs.mqueue.');
    const net = name.startsWith('net.');
    if (!ipc && !net)
      throw new InvalidArgumentError(`${field} key`, `"${key}" is not a namespaced sysctl: it would change the host`);
    if (ipc && host.ipc)
      throw new InvalidArgumentError(
        `${field} key`,
        `"${key}" would change the host's IPC namespace (the pod uses host IPC)`,
      );
    if (net && host.network)
      throw new InvalidArgumentError(
        `${field} key`,
        `"${key}" would change the host's network namespace (the pod uses host networking)`,
      );
  }
}

function describe(value: string): string {
  const c = CONTROL.exec(value)![0];
  return `U+${c.charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}`;
}
