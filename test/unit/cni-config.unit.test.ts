import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configFileOrder, parseNetworkConfig } from '../../src/adapters/cni/cni-config.js';
import { CniConfigError } from '../../src/adapters/cni/cni-errors.js';

const list = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    cniVersion: '1.0.0',
    name: 'pods',
    plugins: [
      { type: 'bridge', bridge: 'cni0' },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
    ...extra,
  });

describe('CNI config file order', () => {
  it('takes .conflist, .conf and .json files in byte order of their names, as libcni does', () => {
    assert.deepEqual(
      configFileOrder(['99-z.conf', 'b.json', '10-a.conflist', 'README.md', 'B.conf', 'x.conf.bak', '10-a.conf']),
      ['10-a.conf', '10-a.conflist', '99-z.conf', 'B.conf', 'b.json'],
    );
  });
});

describe('CNI config parsing', () => {
  it('keeps a conflist as written, plugin keys included', () => {
    const config = parseNetworkConfig('/etc/cni/net.d/10-pods.conflist', list({ disableCheck: true }));
    assert.equal(config?.name, 'pods');
    assert.equal(config?.cniVersion, '1.0.0');
    assert.equal(config?.disableCheck, true);
    assert.deepEqual(config?.plugins, [
      { type: 'bridge', bridge: 'cni0' },
      { type: 'portmap', capabilities: { portMappings: true } },
    ]);
  });

  it('turns a single-plugin .conf into a list of one', () => {
    const config = parseNetworkConfig(
      '/d/10-lo.conf',
      JSON.stringify({ cniVersion: '0.4.0', name: 'lo', type: 'loopback' }),
    );
    assert.equal(config?.name, 'lo');
    assert.equal(config?.plugins.length, 1);
    assert.equal(config?.plugins[0]?.type, 'loopback');
    assert.equal(config?.disableCheck, false);
  });

  it('reads a .json file with plugins as a list', () => {
    assert.equal(parseNetworkConfig('/d/a.json', list())?.plugins.length, 2);
  });

  it('skips a list without plugins', () => {
    assert.equal(parseNetworkConfig('/d/a.conflist', list({ plugins: [] })), undefined);
  });

  for (const [what, text, message, fileName] of [
    ['not JSON', '{ "name": ', /not valid JSON/],
    ['no name', JSON.stringify({ cniVersion: '1.0.0', plugins: [{ type: 'bridge' }] }), /no "name"/],
    ['no cniVersion', JSON.stringify({ name: 'n', plugins: [{ type: 'bridge' }] }), /no "cniVersion"/],
    [
      'an unsupported cniVersion',
      JSON.stringify({ name: 'n', cniVersion: '0.2.0', type: 'bridge' }),
      /0\.2\.0 is not supported/,
    ],
    [
      'a .conf without type',
      JSON.stringify({ name: 'n', cniVersion: '1.0.0' }),
      /the config has no "type"/,
      '/d/bad.conf',
    ],
    [
      'a .conflist without plugins',
      JSON.stringify({ name: 'n', cniVersion: '1.0.0', type: 'bridge' }),
      /"plugins" is not a list/,
    ],
    ['a plugin type with a slash', list({ plugins: [{ type: '../bin/sh' }] }), /not a plugin binary name/],
    ['plugins that are not a list', list({ plugins: { type: 'bridge' } }), /"plugins" is not a list/],
    [
      'capabilities that are not an object',
      list({ plugins: [{ type: 'portmap', capabilities: ['portMappings'] }] }),
      /"capabilities" is not an object/,
    ],
  ] as Array<[string, string, RegExp, string?]>) {
    it(`refuses ${what}, naming the file`, () => {
      const file = fileName ?? '/d/bad.conflist';
      assert.throws(
        () => parseNetworkConfig(file, text),
        (error: unknown) => error instanceof CniConfigError && error.file === file && message.test(error.message),
      );
    });
  }
});
