import { createRequire } from 'node:module';

/*
 * systemd's readiness protocol (sd_notify): with Type=notify, systemd sets NOTIFY_SOCKET
 * and waits for READY=1 before it counts the unit as started (and starts the units
 * ordered after it, kubelet's among them). The datagram is sent by native/notify.c.
 */

/** Where the build puts the module, relative to this file in dist/src/adapters/native. */
const MODULE_PATH = '../../../native/cri_ledger_notify.node';

/** Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=...`) when systemd asked for it; false when it did not. */
export function systemdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return false;
  const native = createRequire(import.meta.url)(MODULE_PATH) as { notify(path: string, message: string): void };
  native.notify(socket, state);
  return true;
}
