import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ociSpecDigest } from '../../src/adapters/oci/oci-spec-factory.js';
import { specDigest } from '../../src/commands/spec-digest.js';

/*
 * The spec factory digests the specs it builds (synchronously, node:crypto); recovery
 * digests the spec containerd stored (Web Crypto, in the core) and compares the two.
 * They must agree on every spec, whatever its text.
 */

describe('the two spec digests', () => {
  it('agree, on ASCII, multi-byte text, escapes and nesting', async () => {
    const specs: Array<Record<string, unknown>> = [
      {},
      { ociVersion: '1.0.2', process: { args: ['sh', '-c', 'echo "hi"\n'], env: ['A=b'] } },
      { annotations: { 'io.kubernetes.pod': 'ünïcødé ✓ 漢字 😀', tab: '\t', nul: '\u0000' } },
      {
        linux: { resources: { memory: { limit: 2 ** 40 }, cpu: { shares: 1024, quota: -1 } } },
        list: [[], [{}], null],
      },
    ];
    for (const spec of specs) assert.equal(ociSpecDigest(spec), await specDigest(spec), JSON.stringify(spec));
    assert.match(ociSpecDigest({}), /^sha256:[0-9a-f]{64}$/);
  });
});
