import type { CriHarness } from './cri-harness.js';

/**
 * Stops and removes every pod sandbox the service knows, through the CRI, so their pause
 * tasks are deleted by runc (which removes their cgroups) rather than killed with the
 * harness's containerd. For a test's `after`, before `cleanup()`; errors are ignored.
 */
export async function removeAllPods(h: CriHarness): Promise<void> {
  const { items } = await h
    .call<{ items: Array<{ id: string }> }>('listPodSandbox', {})
    .catch(() => ({ items: [] as Array<{ id: string }> }));
  for (const { id } of items) {
    await h.call('stopPodSandbox', { podSandboxId: id }).catch(() => undefined);
    await h.call('removePodSandbox', { podSandboxId: id }).catch(() => undefined);
  }
}
