import type { ProtoSet } from './proto.js';

/*
 * The proto files the service loads, in the sets it reads them as. Each set is read from
 * proto/descriptors/<name>.json, which `npm run gen:proto` writes from these files
 * (scripts/gen-proto-descriptors.sh); test/unit/proto-descriptors.unit.test.ts fails when
 * one is out of date.
 */

/** The CRI, relative to proto/. v1alpha2 declares only services, over v1's messages. */
export const CRI_V1_PROTO = 'cri/runtime/v1/api.proto';
export const CRI_V1ALPHA2_PROTO = 'cri/runtime/v1alpha2/api.proto';
export const CRI_PROTO_SET: ProtoSet = { name: 'cri', files: [CRI_V1_PROTO, CRI_V1ALPHA2_PROTO], keepCase: false };

/** Every proto file under proto/containerd, relative to proto/. */
export const CONTAINERD_PROTO_FILES = [
  'containerd/types/mount.proto',
  'containerd/types/descriptor.proto',
  'containerd/types/platform.proto',
  'containerd/types/metrics.proto',
  'containerd/types/task/task.proto',
  'containerd/events/task.proto',
  'containerd/runc/options/oci.proto',
  'containerd/services/version/v1/version.proto',
  'containerd/services/namespaces/v1/namespace.proto',
  'containerd/services/containers/v1/containers.proto',
  'containerd/services/snapshots/v1/snapshots.proto',
  'containerd/services/content/v1/content.proto',
  'containerd/services/images/v1/images.proto',
  'containerd/services/diff/v1/diff.proto',
  'containerd/services/tasks/v1/tasks.proto',
  'containerd/services/leases/v1/leases.proto',
  'containerd/services/events/v1/events.proto',
];

/** Field names as in the protos: see CONTAINERD_LOADER_OPTIONS. */
export const CONTAINERD_PROTO_SET: ProtoSet = { name: 'containerd', files: CONTAINERD_PROTO_FILES, keepCase: true };

/** The ledger API and the image administration API, relative to proto/. */
export const LEDGER_PROTO = 'cri_ledger/v1/ledger.proto';
export const LEDGER_PROTO_SET: ProtoSet = { name: 'cri_ledger-ledger', files: [LEDGER_PROTO], keepCase: false };
export const IMAGES_PROTO = 'cri_ledger/v1/images.proto';
export const IMAGES_PROTO_SET: ProtoSet = { name: 'cri_ledger-images', files: [IMAGES_PROTO], keepCase: false };

export const PROTO_SETS: readonly ProtoSet[] = [
  CRI_PROTO_SET,
  CONTAINERD_PROTO_SET,
  LEDGER_PROTO_SET,
  IMAGES_PROTO_SET,
];
