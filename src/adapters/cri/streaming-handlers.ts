import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { attach, exec, portForward, type StreamingDeps } from '../../commands/streaming-sessions.js';
import type { SessionEndReason, SessionKind as DomainSessionKind } from '../../domain/events.js';
import { correlationIdOf } from '../grpc/correlation.js';
import { newEventId } from '../ids/event-id.js';
import type { SessionEnd, SessionKind } from '../streaming/contracts.js';
import type { AttachRequest__Output } from './generated/runtime/v1/AttachRequest.js';
import type { AttachResponse } from './generated/runtime/v1/AttachResponse.js';
import type { ExecRequest__Output } from './generated/runtime/v1/ExecRequest.js';
import type { ExecResponse } from './generated/runtime/v1/ExecResponse.js';
import type { PortForwardRequest__Output } from './generated/runtime/v1/PortForwardRequest.js';
import type { PortForwardResponse } from './generated/runtime/v1/PortForwardResponse.js';
import { unary } from './runtime-info.js';

/*
 * CRI Exec, Attach and PortForward: proto <-> command. Each call gets a fresh session
 * id (a ULID) here, where ids are made; the command validates and registers the session
 * with the streaming server, and the answer is its URL. v1 and v1alpha2 share these.
 */

// The streaming contracts and the domain name the same kinds and endings: a change to
// one that the other lacks fails to compile here.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const SESSION_CONTRACTS_MATCH: {
  kinds: Same<SessionKind, DomainSessionKind>;
  ends: Same<SessionEnd, SessionEndReason>;
} = { kinds: true, ends: true };

export function streamingHandlers(deps: StreamingDeps): UntypedServiceImplementation {
  return {
    Exec: unary<ExecRequest__Output, ExecResponse>(async (request, call) => ({
      url: exec(deps, { request, sessionId: newEventId(), correlationId: correlationIdOf(call) }),
    })),
    Attach: unary<AttachRequest__Output, AttachResponse>(async (request, call) => ({
      url: attach(deps, { request, sessionId: newEventId(), correlationId: correlationIdOf(call) }),
    })),
    PortForward: unary<PortForwardRequest__Output, PortForwardResponse>(async (request, call) => ({
      url: portForward(deps, { request, sessionId: newEventId(), correlationId: correlationIdOf(call) }),
    })),
  };
}
