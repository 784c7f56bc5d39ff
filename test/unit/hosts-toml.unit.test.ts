import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostsConfigError } from '../../src/adapters/registry/registry-errors.js';
import { hostsFromConfig } from '../../src/adapters/registry/registry-hosts.js';
import { parseTomlSubset } from '../../src/adapters/registry/toml-subset.js';

const FILE = '/etc/cri-ledger/certs.d/docker.io/hosts.toml';

function hosts(registry: string, toml: string) {
  return hostsFromConfig(registry, parseTomlSubset(toml, FILE), FILE);
}

describe('hosts.toml subset parser', () => {
  it('reads strings, booleans, integers, multi-line arrays, quoted table keys and comments', () => {
    const toml = [
      '# docker.io through two mirrors',
      'server = "https://registry-1.docker.io"  # the upstream',
      '',
      '[host."https://mirror.example.com"]',
      '  capabilities = [',
      '    "pull",   # no push',
      "    'resolve',",
      '  ]',
      '  skip_verify = true',
      '  port = 1_000',
      '  ca = "C:\\\\certs\\u00e9.pem"',
      '[host."https://mirror.example.com".header]',
      "  x-token = 'literal \\n stays'",
    ].join('\n');
    assert.deepEqual(parseTomlSubset(toml, FILE), {
      server: 'https://registry-1.docker.io',
      host: {
        'https://mirror.example.com': {
          capabilities: ['pull', 'resolve'],
          skip_verify: true,
          port: 1000,
          ca: 'C:\\certs\u00e9.pem',
          header: { 'x-token': 'literal \\n stays' },
        },
      },
    });
  });

  it('accepts CRLF line ends and dotted keys', () => {
    assert.deepEqual(parseTomlSubset('a.b = 1\r\n[c]\r\nd = false\r\n', FILE), { a: { b: 1 }, c: { d: false } });
  });

  const refused: [string, string, RegExp][] = [
    ['an inline table', 'server = "x"\n[host."h"]\nheader = { a = "b" }\n', /line 3: inline tables/],
    ['a key set twice', 'server = "a"\nserver = "b"\n', /line 2: "server" is set twice/],
    ['a table defined twice', '[host."a"]\n[host."a"]\n', /line 2: table \[host\.a\] is defined twice/],
    ['an unterminated string', 'server = "https://x\n', /line 1: unterminated string/],
    ['a multi-line string', 'server = """x"""\n', /multi-line strings/],
    ['an array of tables', '[[host]]\n', /arrays of tables/],
    ['a date', 'when = 2026-01-01\n', /unsupported value "2026-01-01"/],
    ['two values on a line', 'a = 1 b = 2\n', /line 1: unexpected "b"/],
    ['an unclosed array', 'capabilities = ["pull"\n', /expected "," or "\]"/],
  ];
  for (const [what, toml, message] of refused) {
    it(`refuses ${what}, naming file and line`, () => {
      assert.throws(
        () => parseTomlSubset(toml, FILE),
        (error: Error) =>
          error instanceof HostsConfigError &&
          error.message.startsWith(`registry hosts config ${FILE}: `) &&
          message.test(error.message),
      );
    });
  }
});

describe('registry hosts from hosts.toml', () => {
  it('uses the standard endpoint when there is no config', () => {
    assert.deepEqual(
      hostsFromConfig('docker.io', undefined, FILE).map((h) => h.api),
      ['https://registry-1.docker.io/v2'],
    );
    assert.deepEqual(
      hostsFromConfig('quay.io', undefined, FILE).map((h) => h.api),
      ['https://quay.io/v2'],
    );
  });

  it('tries the hosts in file order, then the server, each with its own settings', () => {
    const list = hosts(
      'docker.io',
      [
        'server = "https://registry-1.docker.io"',
        'capabilities = ["pull", "resolve"]',
        '[host."http://127.0.0.1:5000"]',
        '  capabilities = ["pull"]',
        '[host."https://b.example.com/v2"]',
        '  skip_verify = true',
        '  ca = ["b.pem", "/abs/c.pem"]',
        '[host."a.example.com:8443"]',
        '  ca = "/abs/a.pem"',
      ].join('\n'),
    );
    assert.deepEqual(list, [
      {
        origin: 'http://127.0.0.1:5000',
        api: 'http://127.0.0.1:5000/v2',
        capabilities: ['pull'],
        skipVerify: false,
        ca: [],
      },
      // A URL that already ends in /v2 keeps it; a relative CA is beside the hosts.toml.
      {
        origin: 'https://b.example.com/v2',
        api: 'https://b.example.com/v2',
        capabilities: ['pull', 'resolve', 'push'],
        skipVerify: true,
        ca: ['/etc/cri-ledger/certs.d/docker.io/b.pem', '/abs/c.pem'],
      },
      // No scheme means https, as in containerd.
      {
        origin: 'https://a.example.com:8443',
        api: 'https://a.example.com:8443/v2',
        capabilities: ['pull', 'resolve', 'push'],
        skipVerify: false,
        ca: ['/abs/a.pem'],
      },
      {
        origin: 'https://registry-1.docker.io',
        api: 'https://registry-1.docker.io/v2',
        capabilities: ['pull', 'resolve'],
        skipVerify: false,
        ca: [],
      },
    ]);
  });

  it('ends with the standard endpoint when the file names no server', () => {
    assert.deepEqual(
      hosts('docker.io', '[host."http://mirror.local"]\n').map((h) => h.origin),
      ['http://mirror.local', 'https://registry-1.docker.io'],
    );
  });

  it('refuses unknown capabilities, a non-boolean skip_verify and non-http URLs', () => {
    assert.throws(
      () => hosts('docker.io', '[host."https://m"]\ncapabilities = ["pull", "fly"]\n'),
      /\[host\."https:\/\/m"\]: capabilities must be/,
    );
    assert.throws(() => hosts('docker.io', 'skip_verify = "yes"\n'), /server: skip_verify must be true or false/);
    assert.throws(() => hosts('docker.io', 'server = "ftp://x"\n'), HostsConfigError);
  });
});
