import { Option, type Command } from 'commander';
import { CONFIG_KEYS, type Config, type ConfigOrigins, loadConfigWithOrigins } from './config.js';

/** Adds --config and one flag per configuration key to a command. */
export function withConfigOptions(command: Command): Command {
  command.option('--config <file>', 'configuration file (JSON or YAML)');
  for (const def of CONFIG_KEYS) {
    const option =
      def.kind === 'bool'
        ? new Option(`--${def.flag} [bool]`, def.help)
        : new Option(`--${def.flag} <value>`, def.help);
    command.addOption(option.env(def.env).hideHelp(false));
  }
  return command;
}

/** The configuration for a command: file, then environment, then its flags (but not those of `skip` keys). */
export function configFrom(command: Command, skip: readonly string[] = []): Config {
  return configWithOrigins(command, skip).config;
}

/** configFrom, and where each key's value came from (`default` when nothing set it). */
export function configWithOrigins(
  command: Command,
  skip: readonly string[] = [],
): { config: Config; origins: ConfigOrigins } {
  const opts = command.opts<Record<string, string | boolean | undefined>>();
  const flags: Record<string, string | boolean | undefined> = {};
  for (const def of CONFIG_KEYS) {
    // commander fills options from the environment itself; only count real flags here
    // so the file < env < flag order is decided in one place (loadConfig).
    if (command.getOptionValueSource(camel(def.flag)) === 'cli') flags[def.flag] = opts[camel(def.flag)];
  }
  const file = opts.config as string | undefined;
  return loadConfigWithOrigins({ ...(file ? { file } : {}), env: process.env, flags, skip });
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
