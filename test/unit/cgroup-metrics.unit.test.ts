import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CGROUP_V1_METRICS_TYPE,
  CGROUP_V2_METRICS_TYPE,
  decodeCgroupMetrics,
  UndecodableMetricsError,
} from '../../src/adapters/containerd/cgroup-metrics.js';
import { metricsFilters } from '../../src/adapters/containerd/containerd-stats.js';

// Protobuf written out by hand with upstream's field numbers, so the decoder is checked
// against them and not against itself.
function varint(value: bigint): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest > 0x7fn) {
    bytes.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  bytes.push(Number(rest));
  return bytes;
}
const uint = (field: number, value: bigint | number): Buffer =>
  Buffer.from([...varint(BigInt(field << 3)), ...varint(BigInt(value))]);
const bytesField = (field: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([...varint(BigInt((field << 3) | 2)), ...varint(BigInt(body.length))]), body]);
const sub = (field: number, parts: Buffer[]): Buffer => bytesField(field, Buffer.concat(parts));
const str = (field: number, value: string): Buffer => bytesField(field, Buffer.from(value, 'utf8'));
const fixed64 = (field: number): Buffer => Buffer.from([...varint(BigInt((field << 3) | 1)), 1, 2, 3, 4, 5, 6, 7, 8]);
const packed = (field: number, values: number[]): Buffer =>
  bytesField(field, Buffer.from(values.flatMap((v) => varint(BigInt(v)))));

const MiB = 1024 * 1024;
// What the kernel shows for memory.limit_in_bytes without a limit (2^63 - 4096).
const V1_UNLIMITED = 9223372036854771712n;
const V2_MAX = 2n ** 64n - 1n;

interface V1 {
  cpuTotal?: bigint | number;
  usage?: number;
  limit?: bigint | number;
  totalInactiveFile?: number;
  noMemoryEntry?: boolean;
}

/** io.containerd.cgroups.v1.Metrics with the fields the decoder reads and some it must skip. */
function v1Metrics(o: V1): Buffer {
  const parts = [
    sub(1, [uint(1, 2 * MiB), str(4, '2MB')]), // hugetlb (repeated): usage, pagesize
    sub(2, [uint(1, 3), uint(2, 4096)]), // pids: current, limit
  ];
  if (o.cpuTotal !== undefined) {
    // cpu: usage { total 1, kernel 2, user 3, per_cpu 4 (packed) }, throttling 2
    parts.push(
      sub(3, [sub(1, [uint(1, o.cpuTotal), uint(2, 7), uint(3, 8), packed(4, [5, 6])]), sub(2, [uint(1, 9)])]),
    );
  }
  if (o.usage !== undefined) {
    const memory = [
      uint(1, 11), // cache
      uint(2, 12), // rss (this cgroup only; total_rss 19 includes children)
      uint(9, 13), // pg_fault
      uint(10, 14), // pg_maj_fault
      uint(13, 15), // inactive_file (not total_inactive_file)
      uint(19, 6 * MiB), // total_rss
      uint(26, 1234), // total_pg_fault
      uint(27, 56), // total_pg_maj_fault
      uint(30, o.totalInactiveFile ?? 0), // total_inactive_file
    ];
    // usage 33: MemoryEntry { limit 1, usage 2, max 3, failcnt 4 }; swap 34 after it.
    if (!o.noMemoryEntry)
      memory.push(sub(33, [uint(1, o.limit ?? V1_UNLIMITED), uint(2, o.usage), uint(3, o.usage + 1), uint(4, 0)]));
    memory.push(sub(34, [uint(1, 99), uint(2, 98)]));
    parts.push(sub(4, memory));
  }
  parts.push(sub(5, [sub(1, [str(1, 'Read'), str(2, 'sda'), uint(3, 8), uint(5, 4096)])])); // blkio
  parts.push(fixed64(100)); // an unknown fixed-width field from a newer containerd
  return Buffer.concat(parts);
}

interface V2 {
  usageUsec?: number;
  usage?: number;
  inactiveFile?: number;
  usageLimit?: bigint | number;
}

/** io.containerd.cgroups.v2.Metrics. */
function v2Metrics(o: V2): Buffer {
  const parts = [sub(1, [uint(1, 2), uint(2, 100)])]; // pids
  // cpu: usage_usec 1, user_usec 2, system_usec 3, nr_periods 4
  if (o.usageUsec !== undefined) parts.push(sub(2, [uint(1, o.usageUsec), uint(2, 20), uint(3, 30), uint(4, 0)]));
  if (o.usage !== undefined) {
    parts.push(
      sub(4, [
        uint(1, 5 * MiB), // anon
        uint(2, 3 * MiB), // file
        uint(13, o.inactiveFile ?? 0), // inactive_file
        uint(18, 777), // pgfault
        uint(19, 7), // pgmajfault
        uint(32, o.usage), // usage
        uint(33, o.usageLimit ?? V2_MAX), // usage_limit
        uint(34, 1), // swap_usage
      ]),
    );
  }
  parts.push(sub(6, [sub(1, [uint(1, 8), uint(2, 0), uint(3, 4096)])])); // io
  return Buffer.concat(parts);
}

describe('decodeCgroupMetrics: cgroup v1', () => {
  it('reads CPU total, and memory as containerd CRI reports it: working set = usage - total_inactive_file', () => {
    const bytes = v1Metrics({ cpuTotal: 123_456_789, usage: 20 * MiB, totalInactiveFile: 4 * MiB, limit: 64 * MiB });
    assert.deepEqual(decodeCgroupMetrics(CGROUP_V1_METRICS_TYPE, bytes), {
      cpu: { usageCoreNanoSeconds: '123456789' },
      memory: {
        workingSetBytes: String(16 * MiB),
        availableBytes: String(48 * MiB),
        usageBytes: String(20 * MiB),
        rssBytes: String(6 * MiB),
        pageFaults: '1234',
        majorPageFaults: '56',
      },
    });
  });

  it('clamps the working set at 0 when inactive file pages exceed usage', () => {
    const { memory } = decodeCgroupMetrics(
      CGROUP_V1_METRICS_TYPE,
      v1Metrics({ cpuTotal: 1, usage: MiB, totalInactiveFile: 2 * MiB, limit: 64 * MiB }),
    );
    assert.equal(memory?.workingSetBytes, '0');
    assert.equal(memory?.availableBytes, String(64 * MiB));
  });

  it('reports no available bytes without a limit, or when the working set is above the limit', () => {
    assert.equal(
      decodeCgroupMetrics(CGROUP_V1_METRICS_TYPE, v1Metrics({ cpuTotal: 1, usage: MiB })).memory?.availableBytes,
      '0',
    );
    assert.equal(
      decodeCgroupMetrics(CGROUP_V1_METRICS_TYPE, v1Metrics({ cpuTotal: 1, usage: 2 * MiB, limit: MiB })).memory
        ?.availableBytes,
      '0',
    );
    // 2^62 is still a limit; only above it counts as none.
    assert.equal(
      decodeCgroupMetrics(CGROUP_V1_METRICS_TYPE, v1Metrics({ cpuTotal: 1, usage: MiB, limit: 2n ** 62n })).memory
        ?.availableBytes,
      String(2n ** 62n - BigInt(MiB)),
    );
  });

  it('keeps uint64 values above 2^53 exact', () => {
    const total = 2n ** 63n + 12345n;
    assert.equal(
      decodeCgroupMetrics(CGROUP_V1_METRICS_TYPE, v1Metrics({ cpuTotal: total })).cpu?.usageCoreNanoSeconds,
      '9223372036854788153',
    );
  });

  it('leaves out a part the cgroup did not report', () => {
    assert.deepEqual(decodeCgroupMetrics(CGROUP_V1_METRICS_TYPE, v1Metrics({})), {});
    // containerd CRI reports no memory without the usage entry.
    assert.deepEqual(
      decodeCgroupMetrics(CGROUP_V1_METRICS_TYPE, v1Metrics({ cpuTotal: 5, usage: MiB, noMemoryEntry: true })),
      { cpu: { usageCoreNanoSeconds: '5' } },
    );
    // An empty CPUUsage is still a CPU reading of 0.
    assert.deepEqual(decodeCgroupMetrics(CGROUP_V1_METRICS_TYPE, v1Metrics({ cpuTotal: 0 })), {
      cpu: { usageCoreNanoSeconds: '0' },
    });
  });
});

describe('decodeCgroupMetrics: cgroup v2', () => {
  it('converts usage_usec to nanoseconds and takes inactive_file off usage; anon is the RSS', () => {
    const bytes = v2Metrics({ usageUsec: 1_500_000, usage: 10 * MiB, inactiveFile: MiB, usageLimit: 32 * MiB });
    assert.deepEqual(decodeCgroupMetrics(CGROUP_V2_METRICS_TYPE, bytes), {
      cpu: { usageCoreNanoSeconds: '1500000000' },
      memory: {
        workingSetBytes: String(9 * MiB),
        availableBytes: String(23 * MiB),
        usageBytes: String(10 * MiB),
        rssBytes: String(5 * MiB),
        pageFaults: '777',
        majorPageFaults: '7',
      },
    });
  });

  it('treats memory.max "max" as no limit and clamps the working set at 0', () => {
    const { memory } = decodeCgroupMetrics(
      CGROUP_V2_METRICS_TYPE,
      v2Metrics({ usageUsec: 1, usage: MiB, inactiveFile: 3 * MiB }),
    );
    assert.equal(memory?.workingSetBytes, '0');
    assert.equal(memory?.availableBytes, '0');
  });

  it('accepts a type URL with a prefix', () => {
    const usage = decodeCgroupMetrics(`types.googleapis.com/${CGROUP_V2_METRICS_TYPE}`, v2Metrics({ usageUsec: 2 }));
    assert.deepEqual(usage, { cpu: { usageCoreNanoSeconds: '2000' } });
  });
});

describe('decodeCgroupMetrics: what it refuses', () => {
  it('refuses a type it does not know', () => {
    assert.throws(
      () => decodeCgroupMetrics('io.microsoft.hcsshim.Statistics', Buffer.alloc(0)),
      UndecodableMetricsError,
    );
  });

  it('refuses truncated bytes instead of reading garbage', () => {
    const bytes = v1Metrics({ cpuTotal: 1, usage: MiB });
    assert.throws(
      () => decodeCgroupMetrics(CGROUP_V1_METRICS_TYPE, bytes.subarray(0, bytes.length - 12)),
      (error: unknown) => {
        assert.ok(error instanceof UndecodableMetricsError);
        assert.equal(error.name, 'UndecodableMetricsError');
        assert.ok(error.cause instanceof RangeError);
        return true;
      },
    );
    assert.throws(
      () => decodeCgroupMetrics(CGROUP_V2_METRICS_TYPE, Buffer.from([0x10, 0xff])),
      UndecodableMetricsError,
    );
  });
});

describe('metricsFilters', () => {
  it('gives containerd one double-quoted id selector per container, which it ORs', () => {
    assert.deepEqual(metricsFilters(['a1', 'b.c-d_e']), ['id=="a1"', 'id=="b.c-d_e"']);
    assert.deepEqual(metricsFilters([]), []);
  });
});
