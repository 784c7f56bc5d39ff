import { assertNever } from '../domain/events.js';
import type { Projection } from './read-model.js';

/*
 * Image store: image name (a normalized reference, the stream `image-<name>`) -> what
 * the last pull or import of it recorded. It answers "which images did this node pull,
 * when, from where, and is one being pulled now"; containerd's image records stay the
 * source for what is on disk (an image imported with ctr is not here).
 *
 *   ImagePullStarted ──> pulling ──ImagePulled──> present ──ImageRemoved──> (gone)
 *                          └──ImagePullFailed──> previous state (present, or gone)
 */

export interface ImageRecord {
  name: string;
  present: boolean;
  pulling: boolean;
  imageId?: string;
  targetDigest?: string;
  size?: number;
  origin?: string;
  pulledAt?: string;
  lastError?: string;
}

export const imageStore: Projection<ImageRecord> = {
  name: 'images',

  keysOf(event) {
    return event.stream.startsWith('image-') ? [event.stream.slice('image-'.length)] : [];
  },

  evolve(doc, event) {
    switch (event.type) {
      case 'ImagePullStarted':
        return { ...(doc ?? { name: event.data.reference, present: false }), pulling: true, origin: event.data.origin };
      case 'ImagePulled':
        return {
          name: event.data.reference,
          present: true,
          pulling: false,
          imageId: event.data.imageId,
          targetDigest: event.data.targetDigest,
          size: event.data.size,
          origin: event.data.origin,
          pulledAt: event.at,
        };
      case 'ImagePullFailed':
        if (!doc || !doc.present) return undefined;
        return { ...doc, pulling: false, lastError: event.data.reason };
      case 'ImageRemoved':
        return undefined;
      case 'ImagePullProgress':
      case 'NameReserved':
      case 'SpecGenerated':
      case 'SnapshotPrepared':
      case 'ContainerCreated':
      case 'Compensated':
      case 'SandboxReserved':
      case 'SandboxReady':
      case 'SandboxStopped':
      case 'SandboxRemoved':
      case 'ContainerStarted':
      case 'ContainerExited':
      case 'ContainerStopped':
      case 'ContainerRemoved':
      case 'RetryServed':
      case 'ExecRan':
      case 'HostPathCreated':
      case 'ContainerResourcesUpdated':
      case 'PodCidrUpdated':
      case 'RuntimeReconciled':
      case 'ResultUndelivered':
      case 'RecoveryDecided':
        return doc;
      case 'OperationStalled':
      case 'ExecStarted':
      case 'ExecEnded':
      case 'AttachStarted':
      case 'AttachEnded':
      case 'PortForwardStarted':
      case 'PortForwardEnded':
        return doc;
      default:
        return assertNever(event);
    }
  },
};
