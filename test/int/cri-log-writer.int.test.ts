import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, createReadStream, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  LogDirectoryNotFoundError,
  LogFileOpenError,
  LogWriterClosedError,
} from '../../src/adapters/logs/cri-log-errors.js';
import { CriLogWriter } from '../../src/adapters/logs/cri-log-writer.js';

const NOW = 1_700_000_000_123_456_789n;
const TIME = '2023-11-14T22:13:20.123456789Z';
const now = (): bigint => NOW;

interface Record {
  time: string;
  stream: string;
  tag: string;
  text: string;
}

/** Every line of a log file as a record; a line that is not one fails the test. Latin1 keeps bytes one to one. */
function parse(content: Buffer): Record[] {
  const text = content.toString('latin1');
  assert.ok(text === '' || text.endsWith('\n'), 'the file ends with a whole record');
  return text
    .split('\n')
    .slice(0, -1)
    .map((line) => {
      const m = /^(\S+) (stdout|stderr) ([PF]) (.*)$/s.exec(line);
      assert.ok(m, `not a CRI log record: ${JSON.stringify(line.slice(0, 80))}`);
      return { time: m[1]!, stream: m[2]!, tag: m[3]!, text: m[4]! };
    });
}

/** One stream's lines, with P records joined to the F that ends them. */
function lines(records: Record[], stream: string): string[] {
  const out: string[] = [];
  let partial = '';
  for (const r of records.filter((r) => r.stream === stream)) {
    partial += r.text;
    if (r.tag === 'F') {
      out.push(partial);
      partial = '';
    }
  }
  assert.equal(partial, '', `${stream} ends inside a line`);
  return out;
}

const fifos: string[] = [];

function mkfifo(path: string): string {
  execFileSync('mkfifo', ['-m', '0600', path]);
  fifos.push(path);
  return path;
}

/**
 * A reader still blocked opening a FIFO (its writer never came: a failed test) holds a
 * libuv thread and keeps the process alive; opening the write end once releases it.
 */
function releaseFifos(): void {
  for (const path of fifos.splice(0)) {
    try {
      closeSync(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // ENXIO: nobody is waiting to read it.
    }
  }
}

/** A child process that opens `fifo` for writing and runs `body` with `fd` and `fs` in scope. */
function childWriter(fifo: string, body: string): { child: ChildProcess; exited: Promise<string> } {
  const code = `const fs = require('fs'); const fd = fs.openSync(process.argv[1], 'w');
    const writeAll = (b) => { let o = 0; while (o < b.length) o += fs.writeSync(fd, b, o); };
    ${body}`;
  const child = spawn(process.execPath, ['-e', code, fifo], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`writer child exited ${code}`))));
  });
  return { child, exited };
}

/** Polls until `check` holds. A guard against hanging, not an assertion on time. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if (await check()) return;
    await sleep(5);
  }
  throw new Error(`gave up waiting until ${what}`);
}

describe('CRI log writer on real files and FIFOs', () => {
  let dir: string;
  let n = 0;
  const fresh = (name: string): string => join(dir, `${n++}-${name}`);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cri-ledger-logs-'));
  });
  after(async () => {
    releaseFifos();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes short lines byte for byte, strips \\r\\n, and ends an unterminated line with P', async () => {
    const path = fresh('short.log');
    const fifo = mkfifo(fresh('stdout'));
    const writer = await CriLogWriter.open({ path, now });
    const source = createReadStream(fifo);
    writer.attach('stdout', source);
    await childWriter(fifo, String.raw`writeAll(Buffer.from('hello\nwindows\r\n\nno newline'));`).exited;
    await writer.closed;
    await writer.close();
    assert.equal(
      await readFile(path, 'latin1'),
      `${TIME} stdout F hello\n${TIME} stdout F windows\n${TIME} stdout F \n${TIME} stdout P no newline\n`,
    );
  });

  it('creates the file with mode 0640 and appends to one that exists', async () => {
    const previous = process.umask(0o022);
    try {
      const created = fresh('new.log');
      const writer = await CriLogWriter.open({ path: created, now });
      await writer.close();
      assert.equal((await stat(created)).mode & 0o777, 0o640);
    } finally {
      process.umask(previous);
    }
    const existing = fresh('existing.log');
    await writeFile(existing, 'earlier\n');
    const writer = await CriLogWriter.open({ path: existing, now });
    const source = new PassThrough();
    writer.attach('stderr', source);
    source.end('later\n');
    await writer.closed;
    await writer.close();
    assert.equal(await readFile(existing, 'latin1'), `earlier\n${TIME} stderr F later\n`);
  });

  it('refuses a path whose directory does not exist, naming the path', async () => {
    const path = join(dir, 'no-such-dir', 'c.log');
    await assert.rejects(
      CriLogWriter.open({ path }),
      (e: unknown) => e instanceof LogDirectoryNotFoundError && e.path === path && e.message.includes(path),
    );
    await assert.rejects(
      CriLogWriter.open({ path: dir }),
      (e: unknown) => e instanceof LogFileOpenError && e.path === dir,
    );
  });

  it('cuts long lines at the maximum: exactly max, max + 1, a multiple of max, and multi-byte characters', async () => {
    const path = fresh('long.log');
    const writer = await CriLogWriter.open({ path, now, maxLineBytes: 8 });
    const source = new PassThrough();
    writer.attach('stdout', source);
    source.end(
      Buffer.concat([
        Buffer.from('12345678\n123456789\n' + 'abcdefgh'.repeat(3) + '\n'),
        Buffer.from('aaaaaaa€\n', 'utf8'),
      ]),
    );
    await writer.closed;
    await writer.close();
    const records = parse(await readFile(path));
    assert.deepEqual(
      records.map((r) => `${r.tag}:${r.text}`),
      ['F:12345678', 'P:12345678', 'F:9', 'P:abcdefgh', 'P:abcdefgh', 'F:abcdefgh', `P:aaaaaaa\xe2`, 'F:\x82\xac'],
    );
    assert.equal(Buffer.from(lines(records, 'stdout')[3]!, 'latin1').toString('utf8'), 'aaaaaaa€');
  });

  it('keeps records whole when stdout and stderr interleave', async () => {
    const path = fresh('interleave.log');
    const writer = await CriLogWriter.open({ path, now, maxLineBytes: 4 });
    const out = new PassThrough();
    const err = new PassThrough();
    writer.attach('stdout', out);
    writer.attach('stderr', err);
    out.write('abcdef');
    await nextTurn();
    err.write('12\n3');
    await nextTurn();
    out.write('gh\n');
    await nextTurn();
    err.end('4\n');
    out.end();
    await writer.closed;
    await writer.close();
    assert.deepEqual(
      parse(await readFile(path)).map((r) => `${r.stream} ${r.tag} ${r.text}`),
      ['stdout P abcd', 'stderr F 12', 'stdout F efgh', 'stderr F 34'],
    );
  });

  it('keeps every line of two FIFOs written concurrently, each record whole', async () => {
    const path = fresh('concurrent.log');
    const writer = await CriLogWriter.open({ path, now, maxLineBytes: 64 });
    const line = (stream: string, i: number): string => `${stream}-${i}-${'x'.repeat((i * 7) % 200)}`;
    const expected = (stream: string): string[] => Array.from({ length: 3000 }, (_, i) => line(stream, i));
    const children = (['stdout', 'stderr'] as const).map((stream) => {
      const fifo = mkfifo(fresh(stream));
      writer.attach(stream, createReadStream(fifo));
      // Odd-sized writes, so lines straddle the reads on the other side.
      return childWriter(
        fifo,
        `const line = ${line.toString()};
         const all = Buffer.from(Array.from({ length: 3000 }, (_, i) => line(${JSON.stringify(stream)}, i)).join('\\n') + '\\n');
         for (let at = 0, i = 0; at < all.length; i++) { const size = 1 + ((i * 977) % 5000); writeAll(all.subarray(at, at + size)); at += size; }`,
      ).exited;
    });
    await Promise.all(children);
    await writer.closed;
    await writer.close();
    const records = parse(await readFile(path));
    assert.ok(records.every((r) => r.text.length <= 64));
    assert.deepEqual(lines(records, 'stdout'), expected('stdout'));
    assert.deepEqual(lines(records, 'stderr'), expected('stderr'));
  });

  it('loses and doubles nothing when the file is renamed and reopened while a FIFO pumps lines', async () => {
    const path = fresh('rotate.log');
    const fifo = mkfifo(fresh('stdout'));
    const writer = await CriLogWriter.open({ path, now });
    writer.attach('stdout', createReadStream(fifo));
    const pump = childWriter(
      fifo,
      `let n = 0, stop = false;
       process.stdin.on('end', () => { stop = true; }).resume();
       (function pump() {
         if (stop) { fs.closeSync(fd); process.stdout.write(String(n)); return; }
         let s = ''; for (let i = 0; i < 50; i++) s += 'line ' + (n++) + '\\n';
         writeAll(Buffer.from(s));
         setImmediate(pump);
       })();`,
    );
    const hasRecords = (file: string) => async () => (await stat(file)).size > 0;
    const rotated: string[] = [];
    for (let i = 1; i <= 20; i++) {
      await until(`${path} has records`, hasRecords(path));
      rotated.push(`${path}.${i}`);
      await rename(path, rotated.at(-1)!);
      await writer.reopen();
    }
    await until(`${path} has records after the last reopen`, hasRecords(path));
    pump.child.stdin!.end();
    const count = Number(await pump.exited);
    await writer.closed;
    await writer.close();

    const files = [...rotated, path];
    const perFile = await Promise.all(files.map(async (f) => parse(await readFile(f))));
    perFile.forEach((records, i) => assert.ok(records.length > 0, `${files[i]} got lines`));
    const all = perFile.flat();
    assert.ok(all.every((r) => r.tag === 'F' && r.stream === 'stdout'));
    assert.equal(all.length, count);
    assert.deepEqual(
      all.map((r) => r.text),
      Array.from({ length: count }, (_, i) => `line ${i}`),
    );
  });

  it('keeps writing to the old file when reopen cannot open a new one', async () => {
    const logs = fresh('pod');
    await mkdir(logs);
    const writer = await CriLogWriter.open({ path: join(logs, 'c.log'), now });
    const source = new PassThrough();
    writer.attach('stdout', source);
    source.write('before\n');
    await nextTurn();
    const moved = fresh('pod-moved');
    await rename(logs, moved);
    await assert.rejects(
      writer.reopen(),
      (e: unknown) => e instanceof LogDirectoryNotFoundError && e.path === join(logs, 'c.log'),
    );
    source.end('after\n');
    await writer.closed;
    await writer.close();
    assert.deepEqual(lines(parse(await readFile(join(moved, 'c.log'))), 'stdout'), ['before', 'after']);
  });

  it('refuses reopen and attach after close, and close flushes and destroys a stream still attached', async () => {
    const path = fresh('closed.log');
    const writer = await CriLogWriter.open({ path, now });
    const source = new PassThrough();
    writer.attach('stdout', source);
    source.write('unfinished');
    await nextTurn();
    await writer.close();
    await writer.close();
    await writer.closed;
    assert.ok(source.destroyed);
    assert.equal(await readFile(path, 'latin1'), `${TIME} stdout P unfinished\n`);
    await assert.rejects(
      writer.reopen(),
      (e: unknown) => e instanceof LogWriterClosedError && e.operation === 'reopen',
    );
    assert.throws(() => writer.attach('stderr', new PassThrough()), LogWriterClosedError);
  });

  it('stays within bounded memory for 64 MiB without a newline, with a slow reader behind the file', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const live = (): number => {
      gc();
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };

    const totalMiB = 64;
    const max = 16 * 1024;
    const records = (totalMiB * 1024 * 1024) / max;
    // The log "file" is a FIFO this test drains slowly: a writer that ignored backpressure
    // would queue the whole input in memory.
    const logFifo = mkfifo(fresh('log'));
    const sourceFifo = mkfifo(fresh('stdout'));
    const reader = createReadStream(logFifo);
    const writer = await CriLogWriter.open({ path: logFifo, now });
    const baseline = live();
    let peak = 0;
    let bytes = 0;
    let newlines = 0;
    let nextSample = 0;
    const drained = new Promise<void>((resolve, reject) => {
      reader.on('data', (data: Buffer | string) => {
        const chunk = typeof data === 'string' ? Buffer.from(data) : data;
        bytes += chunk.length;
        for (let at = chunk.indexOf(0x0a); at !== -1; at = chunk.indexOf(0x0a, at + 1)) newlines++;
        if (bytes >= nextSample) {
          peak = Math.max(peak, live() - baseline);
          nextSample += 4 * 1024 * 1024;
        }
        reader.pause();
        setTimeout(() => reader.resume(), 1);
      });
      reader.once('end', resolve);
      reader.once('error', reject);
    });
    writer.attach('stdout', createReadStream(sourceFifo));
    const producer = childWriter(
      sourceFifo,
      `const mib = Buffer.alloc(1024 * 1024, 0x61); for (let i = 0; i < ${totalMiB}; i++) writeAll(mib);`,
    );
    await producer.exited;
    await writer.closed;
    await writer.close();
    await drained;

    assert.equal(newlines, records);
    assert.equal(bytes, records * (`${TIME} stdout P `.length + max + 1));
    assert.ok(peak < 20 * 1024 * 1024, `live memory grew by ${(peak / 1024 / 1024).toFixed(1)} MiB`);
  });
});
