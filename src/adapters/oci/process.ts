import { InvalidArgumentError } from '../../domain/errors.js';
import { absolutePath } from '../../domain/text.js';
import type { ContainerConfig__Output } from '../cri/generated/runtime/v1/ContainerConfig.js';
import type { ImageConfigInput } from './spec-input.js';

/** PATH a process gets when neither the image nor the request sets one (containerd's default). */
export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The process args, merged as docker and containerd merge them: `command` replaces the
 * image's Entrypoint and `args` replace its Cmd; a command without args drops the image's
 * Cmd, because the Cmd was written as arguments for the image's own entrypoint.
 */
export function processArgs(
  config: Pick<ContainerConfig__Output, 'command' | 'args'>,
  image: ImageConfigInput,
): string[] {
  let command = [...config.command];
  let args = [...config.args];
  if (command.length === 0) {
    if (args.length === 0) args = [...(image.cmd ?? [])];
    const entrypoint = image.entrypoint ?? [];
    // `ENTRYPOINT [""]` is how a Dockerfile resets an inherited entrypoint.
    if (!(entrypoint.length === 1 && entrypoint[0] === '')) command = [...entrypoint];
  }
  const all = [...command, ...args];
  if (all.length === 0) {
    throw new InvalidArgumentError('config.command', 'no command specified, and the image has no Entrypoint or Cmd');
  }
  return all;
}

/**
 * Merge environments in order, later lists winning per key while the key keeps its first
 * position (containerd's replaceOrAppendEnvValues). An entry without `=` unsets the key.
 */
export function mergeEnv(...lists: readonly (readonly string[])[]): string[] {
  const result: (string | undefined)[] = [];
  const index = new Map<string, number>();
  for (const list of lists) {
    for (const entry of list) {
      const eq = entry.indexOf('=');
      const key = eq < 0 ? entry : entry.slice(0, eq);
      const at = index.get(key);
      if (eq < 0) {
        if (at !== undefined) result[at] = undefined;
        continue;
      }
      if (at !== undefined) {
        result[at] = entry;
      } else {
        index.set(key, result.length);
        result.push(entry);
      }
    }
  }
  return result.filter((e): e is string => e !== undefined);
}

/** PATH default, HOSTNAME, then the image's env, then the request's envs (which win). */
export function containerEnv(
  config: Pick<ContainerConfig__Output, 'envs'>,
  image: ImageConfigInput,
  hostname: string,
): string[] {
  const requested = config.envs.map((kv) => `${kv.key}=${kv.value}`);
  return mergeEnv([DEFAULT_PATH_ENV], [`HOSTNAME=${hostname}`], image.env ?? [], requested);
}

/** The request's working dir, else the image's, else /. */
export function processCwd(config: Pick<ContainerConfig__Output, 'workingDir'>, image: ImageConfigInput): string {
  // runc refuses a relative cwd only when the task is created, after every event of the
  // creation is written: refuse it here, before any.
  if (config.workingDir !== '') return absolutePath(config.workingDir, 'config.working_dir');
  if (image.workingDir) return absolutePath(image.workingDir, "the image config's WorkingDir");
  return '/';
}
