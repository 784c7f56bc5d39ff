import assert from 'node:assert/strict';
import { it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import {
  isDiskFull,
  LedgerDiskFullError,
  LedgerStorageError,
  storageError,
} from '../../src/adapters/eventlog/storage-errors.js';
import { grpcCodeFor, toServiceError } from '../../src/adapters/grpc/status.js';

/** What classic-level throws: a LEVEL_* code, the OS text in the message or in a cause. */
function levelError(message: string, code = 'LEVEL_IO_ERROR', cause?: Error): Error {
  return Object.assign(new Error(message, cause ? { cause } : {}), { code });
}

it('recognises ENOSPC in a LevelDB write error and in the cause of a failed open', () => {
  assert.equal(isDiskFull(levelError('IO error: /x/ledger/000003.log: No space left on device')), true);
  assert.equal(
    isDiskFull(
      levelError(
        'Database failed to open',
        'LEVEL_DATABASE_NOT_OPEN',
        levelError('IO error: /x/000005.ldb: No space left on device'),
      ),
    ),
    true,
  );
  assert.equal(isDiskFull(levelError('IO error: /x/000003.log: Input/output error')), false);
});

it('maps a full disk to RESOURCE_EXHAUSTED and another storage failure to UNAVAILABLE, naming the directory', () => {
  const full = storageError(
    '/var/lib/cri-ledger/ledger',
    levelError('IO error: /var/lib/cri-ledger/ledger/000003.log: No space left on device'),
  );
  assert.ok(full instanceof LedgerDiskFullError);
  assert.equal(grpcCodeFor(full), Status.RESOURCE_EXHAUSTED);
  assert.match(toServiceError(full).details, /^the disk holding the ledger at \/var\/lib\/cri-ledger\/ledger is full/);
  const io = storageError('/d', levelError('IO error: /d/000003.log: Input/output error'));
  assert.ok(io instanceof LedgerStorageError);
  assert.equal(grpcCodeFor(io), Status.UNAVAILABLE);
  assert.match(io.message, /Input\/output error; nothing was written$/);
});
