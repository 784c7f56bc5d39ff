import { RuntimeUnavailableError } from '../../domain/errors.js';
import { staleWhileRevalidate } from '../cache/stale-while-revalidate.js';
import type { ContainerdApi } from './containerd-api.js';
import { unaryCall } from './containerd-calls.js';

/** How long a health probe (containerd's Version) may take. */
export const DEFAULT_HEALTH_PROBE_TIMEOUT_MS = 2_000;
/** How long a probe's answer is reused: Status is polled by kubelet every few seconds. */
export const DEFAULT_HEALTH_CACHE_MS = 1_000;
/**
 * Up to this age, an answer is given at once while a new probe runs (the next call sees
 * it): kubelet's Status every 5 s does not wait for containerd's round trip.
 */
export const DEFAULT_HEALTH_STALE_MS = 10_000;

export interface RuntimeHealth {
  ready: boolean;
  /** CamelCase reason for the CRI RuntimeReady condition when not ready. */
  reason: string;
  message: string;
  /** containerd's version when it answered. */
  version?: string;
}

/**
 * Whether containerd answers. The service starts without it; Status reports
 * RuntimeReady=false with the reason, and `require()` turns calls that need containerd
 * into UNAVAILABLE until it is back.
 */
export class ContainerdHealth {
  /** The probe's last answer while fresh; up to DEFAULT_HEALTH_STALE_MS, it is answered while a new probe runs. */
  readonly check: () => Promise<RuntimeHealth>;

  constructor(
    private readonly api: ContainerdApi,
    now: () => number = Date.now,
  ) {
    this.check = staleWhileRevalidate(() => this.probe(), {
      freshMs: DEFAULT_HEALTH_CACHE_MS,
      maxStaleMs: DEFAULT_HEALTH_STALE_MS,
      now,
    });
  }

  /** Throws RuntimeUnavailableError when containerd does not answer. */
  async require(): Promise<void> {
    const health = await this.check();
    if (!health.ready) throw new RuntimeUnavailableError(health.message);
  }

  private async probe(): Promise<RuntimeHealth> {
    let health: RuntimeHealth;
    try {
      const response = await unaryCall<{ version: string }>(
        this.api.version,
        'Version',
        {},
        { timeoutMs: DEFAULT_HEALTH_PROBE_TIMEOUT_MS },
      );
      health = { ready: true, reason: '', message: '', version: response.version };
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      health = {
        ready: false,
        reason: 'ContainerdUnreachable',
        message: `containerd at ${this.api.address} did not answer: ${detail}`,
      };
    }
    return health;
  }
}
