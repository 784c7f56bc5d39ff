import { assertNever } from '../domain/events.js';
import { release, reserve, type NameHold } from './name-index.js';
import type { Projection } from './read-model.js';

/** Sandbox name index: `<name>_<namespace>_<uid>_<attempt>` -> the sandbox holding it. */
export const sandboxNameIndex: Projection<NameHold> = {
  name: 'sandbox-names',

  keysOf(event) {
    if (!event.stream.startsWith('sandbox-')) return [];
    switch (event.type) {
      case 'SandboxReserved':
      case 'SandboxRemoved':
        return [event.data.name];
      case 'Compensated':
        return event.data.name === undefined ? [] : [event.data.name];
      default:
        return [];
    }
  },

  evolve(doc, event) {
    switch (event.type) {
      case 'SandboxReserved':
        return reserve(doc, event, event.data.name, event.data.requestDigest);
      case 'SandboxRemoved':
      case 'Compensated':
        return release(doc, event);
      case 'NameReserved':
      case 'SpecGenerated':
      case 'SnapshotPrepared':
      case 'ContainerCreated':
      case 'ContainerStarted':
      case 'ContainerExited':
      case 'ContainerStopped':
      case 'ContainerRemoved':
      case 'SandboxReady':
      case 'SandboxStopped':
        return doc;
      default:
        return assertNever(event);
    }
  },
};
