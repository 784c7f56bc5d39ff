/*
 * The protocol names, defaults and per-session options of the streaming server (issue 14).
 * Protocol facts are kubelet's (k8s.io/kubelet/pkg/cri/streaming and client-go's
 * remotecommand and portforward packages): names, stream types, channel numbers.
 */

/** Which streams an exec or attach session opens, as the CRI request asked (kubelet reads them from the URL query). */
export interface StreamingOptions {
  readonly stdin: boolean;
  readonly stdout: boolean;
  readonly stderr: boolean;
  readonly tty: boolean;
  /** Exec's command: kubelet names it in a non-zero exit code's message (`error executing command [sh -c ..]`). */
  readonly command?: readonly string[];
}

/** Loopback, as containerd's CRI streaming server defaults to. */
export const DEFAULT_STREAMING_ADDRESS = '127.0.0.1';
/** 0: a free port chosen when the server starts. */
export const DEFAULT_STREAMING_PORT = 0;
/** containerd's `stream_idle_timeout` default. */
export const DEFAULT_STREAMING_IDLE_TIMEOUT_MS = 4 * 3_600_000;
/** kubelet's streaming library keeps an unused token for one minute. */
export const DEFAULT_STREAMING_TOKEN_TTL_MS = 60_000;
/** kubelet's `StreamCreationTimeout`: how long a client may take to open its SPDY streams. */
export const DEFAULT_STREAM_CREATION_TIMEOUT_MS = 30_000;
/** How long close() waits for handlers to record how their sessions ended. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 5_000;
/** 128 random bits: unguessable, single use. */
export const TOKEN_BYTES = 16;

/** Remote command protocols over SPDY (`X-Stream-Protocol-Version`), newest first. */
export const SPDY_REMOTE_COMMAND_PROTOCOLS = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v3.channel.k8s.io',
  'v2.channel.k8s.io',
  'channel.k8s.io',
] as const;

/** Remote command protocols over WebSocket (`Sec-WebSocket-Protocol`), newest first. */
export const WEBSOCKET_REMOTE_COMMAND_PROTOCOLS = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v4.base64.channel.k8s.io',
  'base64.channel.k8s.io',
  'channel.k8s.io',
] as const;

export const SPDY_PORT_FORWARD_PROTOCOLS = ['portforward.k8s.io'] as const;
/** kubelet's WebSocket port forward: channel pairs per `?port=`, binary or base64. */
export const WEBSOCKET_PORT_FORWARD_PROTOCOLS = ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io'] as const;

/** Error status as a JSON metav1.Status (v4 and v5) rather than bare text (v1 to v3). */
export function statusIsJson(protocol: string): boolean {
  return protocol.startsWith('v4.') || protocol.startsWith('v5.');
}

/** Terminal resize arrives on its own stream from v3 on. */
export function supportsResize(protocol: string): boolean {
  return statusIsJson(protocol) || protocol.startsWith('v3.');
}

/** kubelet drops stderr when a tty is asked for: the terminal merges both. */
export function effectiveOptions(options: StreamingOptions): StreamingOptions {
  return options.tty && options.stderr ? { ...options, stderr: false } : options;
}
