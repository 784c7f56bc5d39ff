import { fileURLToPath } from 'node:url';

/*
 * The port-forward tests' echo server (test/support/go/tcp-echo-server, a static binary
 * built by scripts/build-go-client.sh), run in a pod's container: the busybox image has
 * no echo server that copes with many connections at once, so the binary is mounted in.
 */

export const TCP_ECHO_SERVER_BINARY = fileURLToPath(new URL('../../go/tcp-echo-server', import.meta.url));

/** The command and mount of a container config that echoes on `port` (and resets every connection on `resetPort`). */
export function echoServerConfig(port: number, resetPort?: number) {
  const reset = resetPort === undefined ? [] : ['-reset-port', String(resetPort)];
  return {
    command: ['/echo-server', '-port', String(port), ...reset],
    mounts: [{ containerPath: '/echo-server', hostPath: TCP_ECHO_SERVER_BINARY, readonly: true }],
  };
}
