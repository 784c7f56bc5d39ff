import type { SessionKind } from './contracts.js';
import { statusIsJson } from './streaming-options.js';

/*
 * What kubelet's remote command server writes on the error stream when a session ends
 * (k8s.io/kubelet/pkg/cri/streaming/remotecommand): v4 and v5 a metav1.Status as JSON,
 * older protocols the Status's message as text, and nothing on success. The texts are
 * kubelet's and containerd's own, so `kubectl exec` and `crictl exec` print what they
 * print against containerd:
 *
 *   exit code N (exec)  Failure, reason NonZeroExitCode, details.causes [{reason: ExitCode, message: "N"}],
 *                       message "command terminated with non-zero exit code: error executing command [cmd], exit code N"
 *   an error            Failure, reason InternalError, code 500 (apierrors.NewInternalError)
 *   attach              Success once the handler ends without an error: kubelet reports no exit code for attach
 */

export type SessionResult = { exitCode: number } | { error: string };

/** The bytes for the error stream, or undefined when nothing is written (success on v1 to v3). */
export function errorStreamText(
  protocol: string,
  kind: SessionKind,
  result: SessionResult,
  command: readonly string[] = [],
): string | undefined {
  const status = statusOf(kind, result, command);
  if (statusIsJson(protocol)) return goJson(status);
  return status.status === 'Success' ? undefined : status.message;
}

interface Status {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes: Array<{ reason?: string; message: string }> };
  code?: number;
}

function statusOf(kind: SessionKind, result: SessionResult, command: readonly string[]): Status {
  if ('error' in result) {
    const cause =
      kind === 'attach'
        ? `error attaching to container: ${result.error}`
        : `error executing command in container: ${result.error}`;
    return {
      metadata: {},
      status: 'Failure',
      message: `Internal error occurred: ${cause}`,
      reason: 'InternalError',
      details: { causes: [{ message: cause }] },
      code: 500,
    };
  }
  if (kind === 'attach' || result.exitCode === 0) return { metadata: {}, status: 'Success' };
  const code = result.exitCode;
  return {
    metadata: {},
    status: 'Failure',
    // containerd's CodeExitError text, with Go's %v of a []string: [sh -c exit 3].
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: `${code}` }] },
  };
}

/** JSON as Go's encoding/json writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped. */
export function goJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
