import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/**
 * The project's proto/ directory. tsc does not copy .proto files, so the compiled module
 * (dist/src/adapters/grpc/proto.js) walks up from its own location to the first
 * directory that holds proto/: the project root, from dist/ or from src/ alike.
 */
export const PROTO_DIR = findProtoDir(dirname(fileURLToPath(import.meta.url)));

function findProtoDir(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'cri_ledger'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`no proto/ directory above ${start}; is the project installed whole?`);
  }
}

const cache = new Map<string, GrpcObject>();

/**
 * Loads a proto file (relative to proto/) at runtime. Field names become camelCase,
 * 64-bit integers JavaScript numbers (seqs stay far below 2^53), enums their names, and
 * unset fields their defaults, so handlers never see `undefined` for a scalar.
 */
export function loadProto(file: string): GrpcObject {
  let loaded = cache.get(file);
  if (!loaded) {
    const definition = loadSync(file, {
      includeDirs: [PROTO_DIR],
      keepCase: false,
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    loaded = loadPackageDefinition(definition);
    cache.set(file, loaded);
  }
  return loaded;
}
