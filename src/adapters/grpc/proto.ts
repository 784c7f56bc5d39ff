import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject, type MethodDefinition, type ServiceDefinition } from '@grpc/grpc-js';
import type { Options } from '@grpc/proto-loader';
import protobuf from 'protobufjs/light.js';

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
 * The services of a set as grpc-js's package tree (`tree.cri_ledger.v1.Ledger` a client
 * class), loaded once per process. Field names become camelCase unless the set keeps
 * them, 64-bit integers JavaScript numbers (seqs stay far below 2^53), enums their names,
 * and unset fields their defaults, so handlers never see `undefined` for a scalar.
 */
export function loadProto(set: ProtoSet, options: DecodeOptions = LEDGER_DECODE_OPTIONS): GrpcObject {
  let loaded = cache.get(set.name);
  if (!loaded) {
    loaded = loadPackageDefinition(loadServices(set, options));
    cache.set(set.name, loaded);
  }
  return loaded;
}

export const LEDGER_DECODE_OPTIONS: DecodeOptions = { longs: Number, enums: String, defaults: true, oneofs: true };

/*
 * The gRPC services of a set of proto files, from a JSON descriptor made ahead of time
 * (`npm run gen:proto` writes proto/descriptors/<set>.json), read with protobufjs's light
 * build. @grpc/proto-loader parsed the .proto text at every start and encoded a
 * descriptor of every message and enum for reflection, which nothing here uses: 150 ms
 * of the service's start. The definitions are the ones proto-loader makes for services
 * (path, streaming flags, camelCase alias, codecs that decode with the set's options);
 * a unit test holds the two equal, and the JSON equal to the .proto files.
 */

/** How decoded messages look: protobufjs's toObject options, as proto-loader takes them. */
export type DecodeOptions = Pick<Options, 'longs' | 'enums' | 'defaults' | 'oneofs'>;

/** A set of proto files read together, and whether field names keep the proto's snake_case. */
export interface ProtoSet {
  name: string;
  files: readonly string[];
  keepCase: boolean;
}

export const descriptorPath = (set: ProtoSet): string => join(PROTO_DIR, 'descriptors', `${set.name}.json`);

/** Every service of the set, keyed by its full name (`runtime.v1.RuntimeService`), as proto-loader keys them. */
export function loadServices(set: ProtoSet, options: DecodeOptions): Record<string, ServiceDefinition> {
  const root = protobuf.Root.fromJSON(JSON.parse(readFileSync(descriptorPath(set), 'utf8')) as protobuf.INamespace);
  root.resolveAll();
  const services: Record<string, ServiceDefinition> = {};
  const visit = (namespace: protobuf.NamespaceBase, prefix: string): void => {
    for (const child of namespace.nestedArray) {
      const name = prefix === '' ? child.name : `${prefix}.${child.name}`;
      if (child instanceof protobuf.Service) services[name] = serviceDefinition(child, name, options);
      else if (child instanceof protobuf.Namespace) visit(child, name);
    }
  };
  visit(root, '');
  return services;
}

function serviceDefinition(service: protobuf.Service, fullName: string, options: DecodeOptions): ServiceDefinition {
  const definition: Record<string, MethodDefinition<object, object>> = {};
  for (const method of service.methodsArray) {
    const request = method.resolvedRequestType;
    const response = method.resolvedResponseType;
    if (!request || !response) throw new Error(`${fullName}.${method.name}: its types did not resolve`);
    definition[method.name] = {
      path: `/${fullName}/${method.name}`,
      requestStream: method.requestStream === true,
      responseStream: method.responseStream === true,
      requestSerialize: serializer(request),
      requestDeserialize: deserializer(request, options),
      responseSerialize: serializer(response),
      responseDeserialize: deserializer(response, options),
      // grpc-js adds client methods under this name too: `client.listContainers`.
      originalName: camelCase(method.name),
    };
  }
  return definition;
}

/** A method name in camelCase as lodash's camelCase (proto-loader's) makes it: `CloseIO` is `closeIo`. */
function camelCase(name: string): string {
  const words = name.match(/[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+/g) ?? [name];
  return words
    .map((word, i) => (i === 0 ? word.toLowerCase() : word.charAt(0).toUpperCase() + word.slice(1).toLowerCase()))
    .join('');
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) {
      throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    }
    return Buffer.from(type.encode(type.fromObject(value)).finish());
  };
}

function deserializer(type: protobuf.Type, options: DecodeOptions): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), options as protobuf.IConversionOptions);
}

/**
 * The JSON descriptor of a set, from its .proto files (for `npm run gen:proto` and the
 * test that holds the committed files current). Loads protobufjs's full build, with the
 * parser: only here, never when serving.
 */
export async function descriptorJson(set: ProtoSet): Promise<string> {
  const full = (await import('protobufjs')).default;
  const root = new full.Root();
  root.resolvePath = (_origin, target) => {
    if (isAbsolute(target)) return target;
    // google/protobuf/*.proto are bundled with protobufjs: a name it resolves itself.
    return target.startsWith('google/protobuf/') ? target : join(PROTO_DIR, target);
  };
  root.loadSync([...set.files], { keepCase: set.keepCase });
  root.resolveAll();
  return `${JSON.stringify(root.toJSON(), null, 1)}\n`;
}
