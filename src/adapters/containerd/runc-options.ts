import type { WireAny } from './containerd-wire.js';

/** The Any type URL under which containerd's typeurl registry knows the runc shim's options. */
export const RUNC_OPTIONS_TYPE_URL = 'containerd.runc.v1.Options';

/** The fields of `containerd.runc.v1.Options` (proto/containerd/runc/options/oci.proto) we set. */
export interface RuncOptions {
  /** runc's `--root`; the shim appends the namespace (`<root>/<namespace>/<id>`). */
  root?: string;
  /** runc binary instead of `runc` from PATH. */
  binaryName?: string;
  /** runc's systemd cgroup driver (containerd's SystemdCgroup): cgroupsPath is `slice:prefix:name`. */
  systemdCgroup?: boolean;
}

// Field numbers from oci.proto. Only length-delimited strings are written, so the
// encoder needs no more than a tag, a varint length and the UTF-8 bytes.
const FIELD_BINARY_NAME = 6;
const FIELD_ROOT = 7;
const FIELD_SYSTEMD_CGROUP = 9;
const WIRE_TYPE_VARINT = 0;
const WIRE_TYPE_LEN = 2;

function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest > 0x7f) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return bytes;
}

function stringField(field: number, value: string): Buffer {
  const data = Buffer.from(value, 'utf8');
  return Buffer.concat([Buffer.from([...varint((field << 3) | WIRE_TYPE_LEN), ...varint(data.length)]), data]);
}

/**
 * The protobuf encoding of `options`, hand-written rather than through protobufjs: that
 * package is only a transitive dependency of @grpc/proto-loader here, and two string
 * fields and a bool do not justify depending on it directly. Fields are written in field-number
 * order and empty strings are left out, as proto3 encoders do.
 */
export function encodeRuncOptions(options: RuncOptions): Buffer {
  const parts: Buffer[] = [];
  if (options.binaryName) parts.push(stringField(FIELD_BINARY_NAME, options.binaryName));
  if (options.root) parts.push(stringField(FIELD_ROOT, options.root));
  if (options.systemdCgroup) parts.push(Buffer.from([...varint((FIELD_SYSTEMD_CGROUP << 3) | WIRE_TYPE_VARINT), 1]));
  return Buffer.concat(parts);
}

/** `options` as the Any that Tasks.Create (or Container.Runtime.options) carries. */
export function runcOptionsAny(options: RuncOptions): WireAny {
  return { type_url: RUNC_OPTIONS_TYPE_URL, value: encodeRuncOptions(options) };
}
