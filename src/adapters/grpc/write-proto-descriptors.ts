import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { descriptorJson, descriptorPath } from './proto.js';
import { PROTO_SETS } from './proto-sets.js';

/*
 * `npm run gen:proto` ends here: writes proto/descriptors/<set>.json for every set the
 * service loads, from the .proto files. Run it after changing a proto file.
 */
for (const set of PROTO_SETS) {
  const path = descriptorPath(set);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, await descriptorJson(set));
  console.log(`wrote ${path}`);
}
