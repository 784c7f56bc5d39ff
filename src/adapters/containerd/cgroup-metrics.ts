import { CriLedgerError } from '../../domain/errors.js';

/*
 * The cgroup statistics inside a containerd Metric, read by hand from the Any's bytes:
 * proto-loader has codecs only for request and response messages, and the payload is a
 * message of containerd/cgroups, which this project does not otherwise speak.
 *
 * Field numbers are upstream's (containerd/cgroups stats/v1 and cgroup2/stats
 * metrics.proto, the versions containerd 1.6 vendors). The arithmetic is containerd 1.6
 * CRI's, which is kubelet's and cAdvisor's: working set = usage - inactive file pages,
 * clamped at 0; available = limit - working set, 0 when the limit counts as unlimited.
 */

/** Type of the Any on a cgroup v1 host (runc shim, containerd 1.6). */
export const CGROUP_V1_METRICS_TYPE = 'io.containerd.cgroups.v1.Metrics';
/** Type of the Any on a cgroup v2 host. */
export const CGROUP_V2_METRICS_TYPE = 'io.containerd.cgroups.v2.Metrics';

/** Limits above 2^62 mean "no limit": the kernel rounds the unset maximum down from 2^63-1. */
const UNLIMITED_ABOVE = 1n << 62n;

/** Cumulative CPU time of the cgroup, all cores summed, in nanoseconds (decimal string). */
export interface CpuUsage {
  usageCoreNanoSeconds: string;
}

/** Memory of the cgroup in bytes and fault counts, each a decimal string (uint64). */
export interface MemoryUsage {
  /** usage - inactive file pages: what kubelet evicts and reports as "memory". */
  workingSetBytes: string;
  /** limit - working set; '0' without a limit. */
  availableBytes: string;
  /** All memory charged to the cgroup, page cache included. */
  usageBytes: string;
  /** Anonymous memory and swap cache (v1 total_rss, v2 anon). */
  rssBytes: string;
  pageFaults: string;
  majorPageFaults: string;
}

/** What one Metric says; a part is absent when the cgroup reported no such controller. */
export interface CgroupUsage {
  cpu?: CpuUsage;
  memory?: MemoryUsage;
}

/** A metrics payload this decoder does not know, or bytes that are not a valid message. */
export class UndecodableMetricsError extends CriLedgerError {}

/**
 * The CPU and memory figures of a Metric's `data`. `typeUrl` may carry a prefix
 * (`types.googleapis.com/...`); only the message name after the last `/` counts.
 */
export function decodeCgroupMetrics(typeUrl: string, value: Uint8Array): CgroupUsage {
  const type = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  try {
    if (type === CGROUP_V1_METRICS_TYPE) return decodeV1(Message.parse(value));
    if (type === CGROUP_V2_METRICS_TYPE) return decodeV2(Message.parse(value));
  } catch (error) {
    throw new UndecodableMetricsError(`cannot decode ${type}: ${(error as Error).message}`, { cause: error });
  }
  throw new UndecodableMetricsError(`unsupported metrics type ${JSON.stringify(typeUrl)}`);
}

// v1 Metrics: cpu 3 (CPUStat: usage 1 -> CPUUsage: total 1), memory 4 (MemoryStat:
// total_rss 19, total_pg_fault 26, total_pg_maj_fault 27, total_inactive_file 30,
// usage 33 -> MemoryEntry: limit 1, usage 2).
function decodeV1(metrics: Message): CgroupUsage {
  const result: CgroupUsage = {};
  const cpuUsage = metrics.message(3)?.message(1);
  if (cpuUsage) result.cpu = { usageCoreNanoSeconds: String(cpuUsage.uint(1)) };
  const memory = metrics.message(4);
  const entry = memory?.message(33);
  // containerd reports no memory when the stat has no usage entry; neither do we.
  if (memory && entry) {
    result.memory = memoryUsage({
      usage: entry.uint(2),
      inactiveFile: memory.uint(30),
      limit: entry.uint(1),
      rss: memory.uint(19),
      faults: memory.uint(26),
      majorFaults: memory.uint(27),
    });
  }
  return result;
}

// v2 Metrics: cpu 2 (CPUStat: usage_usec 1), memory 4 (MemoryStat: anon 1,
// inactive_file 13, pgfault 18, pgmajfault 19, usage 32, usage_limit 33).
function decodeV2(metrics: Message): CgroupUsage {
  const result: CgroupUsage = {};
  const cpu = metrics.message(2);
  if (cpu) result.cpu = { usageCoreNanoSeconds: String(cpu.uint(1) * 1000n) };
  const memory = metrics.message(4);
  if (memory) {
    // cAdvisor (and so containerd) counts anon as RSS on cgroup v2.
    result.memory = memoryUsage({
      usage: memory.uint(32),
      inactiveFile: memory.uint(13),
      limit: memory.uint(33),
      rss: memory.uint(1),
      faults: memory.uint(18),
      majorFaults: memory.uint(19),
    });
  }
  return result;
}

/** containerd CRI's figures from the raw counters, the same for both cgroup versions. */
function memoryUsage(raw: {
  usage: bigint;
  inactiveFile: bigint;
  limit: bigint;
  rss: bigint;
  faults: bigint;
  majorFaults: bigint;
}): MemoryUsage {
  const workingSet = clampedDifference(raw.usage, raw.inactiveFile);
  return {
    workingSetBytes: String(workingSet),
    availableBytes: String(available(raw.limit, workingSet)),
    usageBytes: String(raw.usage),
    rssBytes: String(raw.rss),
    pageFaults: String(raw.faults),
    majorPageFaults: String(raw.majorFaults),
  };
}

function clampedDifference(a: bigint, b: bigint): bigint {
  return a > b ? a - b : 0n;
}

// containerd lets a limit below the working set wrap around as uint64; 0 says it better.
function available(limit: bigint, workingSet: bigint): bigint {
  return limit > UNLIMITED_ABOVE ? 0n : clampedDifference(limit, workingSet);
}

/**
 * One protobuf message as varint and length-delimited fields by number. Fixed-width
 * fields are skipped (no field read here has one); a scalar's last occurrence wins and
 * an absent one is 0, as in proto3.
 */
class Message {
  private constructor(private readonly fields: Map<number, bigint | Uint8Array>) {}

  static parse(bytes: Uint8Array): Message {
    const fields = new Map<number, bigint | Uint8Array>();
    let at = 0;
    const varint = (): bigint => {
      let value = 0n;
      for (let i = 0; i < 10; i++) {
        if (at >= bytes.length) throw new RangeError('truncated varint');
        const byte = bytes[at++]!;
        value |= BigInt(byte & 0x7f) << BigInt(7 * i);
        if (byte < 0x80) return BigInt.asUintN(64, value);
      }
      throw new RangeError('varint longer than 10 bytes');
    };
    while (at < bytes.length) {
      const key = varint();
      const field = Number(key >> 3n);
      const wireType = Number(key & 7n);
      if (field === 0) throw new RangeError('field number 0');
      switch (wireType) {
        case 0:
          fields.set(field, varint());
          break;
        case 1:
        case 5:
          at += wireType === 1 ? 8 : 4;
          if (at > bytes.length) throw new RangeError(`field ${field} runs past the message`);
          break;
        case 2: {
          const length = Number(varint());
          if (at + length > bytes.length) throw new RangeError(`field ${field} runs past the message`);
          // A repeated message field keeps its last element here; none is read as one.
          fields.set(field, bytes.subarray(at, (at += length)));
          break;
        }
        default:
          throw new RangeError(`unsupported wire type ${wireType} in field ${field}`);
      }
    }
    return new Message(fields);
  }

  uint(field: number): bigint {
    const value = this.fields.get(field);
    return typeof value === 'bigint' ? value : 0n;
  }

  message(field: number): Message | undefined {
    const value = this.fields.get(field);
    return value instanceof Uint8Array ? Message.parse(value) : undefined;
  }
}
