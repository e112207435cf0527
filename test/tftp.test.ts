/**
 * TFTP server and codec. Real clients (tftp-hpa's `tftp`, `atftp`) and raw dgram sockets on
 * 127.0.0.1; the server listens on port 0.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApsError } from '../src/errors.js';
import { memoryLogger } from '../src/log.js';
import { createTftpServer, type TftpRequest, type TftpServer, type TftpServerOptions, type TftpSource } from '../src/servers/tftp.js';
import {
  OP_ACK,
  OP_DATA,
  OP_ERROR,
  OP_OACK,
  OP_RRQ,
  OP_WRQ,
  decode,
  decodeRequest,
  encodeAck,
  encodeError,
  encodeOack,
  encodeRequest,
  fromNetascii,
  toNetascii,
  type TftpPacket,
} from '../src/wire/tftp.js';

// ---------------------------------------------------------------- fixtures

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-tftp-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true })); // also after a crash
const rand = (n: number): Buffer => randomFillSync(Buffer.allocUnsafe(n));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const SMALL = rand(3000);
const TEXT = Buffer.from('[phone]\nserver=10.0.0.1\nwindows line\r\nbare\rcr\n\nend\n');
const EXACT_1428 = rand(4 * 1428);
const EXACT_512 = rand(4 * 512);
const BIG_PATH = path.join(tmp, 'big.bin');
const ROLL_PATH = path.join(tmp, 'rollover.bin');
fs.writeFileSync(BIG_PATH, rand(5 * 1024 * 1024 + 123));
const ROLL_BLOCKS_512 = 65536 + 150; // > 65535 blocks at blksize 512
const ROLL_SIZE = ROLL_BLOCKS_512 * 512 - 200;
{
  const fd = fs.openSync(ROLL_PATH, 'w');
  const chunk = Buffer.allocUnsafe(1 << 20);
  for (let off = 0; off < ROLL_SIZE; off += chunk.length) {
    const n = Math.min(chunk.length, ROLL_SIZE - off);
    fs.writeSync(fd, randomFillSync(chunk), 0, n);
  }
  fs.closeSync(fd);
}
const ROLL_RAW = rand(70_000 * 8 + 3); // > 65535 blocks at blksize 8
const SLOW = rand(20 * 512 + 7);

const seen: TftpRequest[] = [];
let resolveCalls = 0;

function resolver(req: TftpRequest): TftpSource | Promise<TftpSource> {
  resolveCalls++;
  seen.push(req);
  switch (req.file) {
    case 'small.cfg':
    case 'dir/SEP001122334455.cnf.xml':
      return { kind: 'buffer', data: SMALL };
    case 'text.cfg':
      return { kind: 'buffer', data: TEXT };
    case 'exact1428.bin':
      return { kind: 'buffer', data: EXACT_1428 };
    case 'exact512.bin':
      return { kind: 'buffer', data: EXACT_512 };
    case 'empty.cfg':
      return { kind: 'buffer', data: Buffer.alloc(0) };
    case 'big.bin':
      return { kind: 'file', path: BIG_PATH };
    case 'rollover.bin':
      return { kind: 'file', path: ROLL_PATH };
    case 'rollraw.bin':
      return { kind: 'buffer', data: ROLL_RAW };
    case 'slow.bin':
      return { kind: 'buffer', data: SLOW };
    case 'async.cfg':
      return new Promise((r) => setTimeout(() => r({ kind: 'buffer', data: SMALL }), 20));
    case 'denied.cfg':
      return { kind: 'error', code: 2, message: 'phone is not provisioned here' };
    case 'missing-file':
      return { kind: 'file', path: path.join(tmp, 'does-not-exist') };
    case 'banned':
      return { kind: 'silent' };
    case 'throws':
      throw new Error('resolver exploded');
    case 'rejects':
      return Promise.reject(new Error('resolver rejected'));
    default:
      return { kind: 'error', code: 1, message: 'file not found' };
  }
}

// ---------------------------------------------------------------- helpers

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 20_000, cwd: opts.cwd ?? tmp, encoding: 'utf8', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

let seq = 0;
const outFile = (name: string): string => path.join(tmp, `out-${++seq}-${name.replace(/\W/g, '_')}`);

const hpaGet = (port: number, name: string, out: string, mode: 'binary' | 'ascii' = 'binary'): Promise<Run> =>
  run('tftp', ['127.0.0.1', String(port), '-m', mode, '-c', 'get', name, out]);

const atftpGet = (port: number, name: string, out: string, options: string[] = []): Promise<Run> =>
  run('atftp', ['--get', '-r', name, '-l', out, ...options.flatMap((o) => ['--option', o]), '--tftp-timeout', '2', '127.0.0.1', String(port)]);

const ATFTP_OPTS = ['blksize 1428', 'tsize enable', 'windowsize 8'];

/** A raw UDP socket with an awaitable packet queue. */
interface Raw {
  sock: dgram.Socket;
  port: number;
  send(buf: Buffer, port: number): void;
  next(timeoutMs?: number): Promise<{ pkt: TftpPacket | null; msg: Buffer; port: number } | null>;
  close(): void;
}
async function openRaw(): Promise<Raw> {
  const sock = dgram.createSocket('udp4');
  sock.on('error', () => {});
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const queue: { msg: Buffer; port: number }[] = [];
  let waiter: (() => void) | null = null;
  sock.on('message', (msg, rinfo) => {
    queue.push({ msg, port: rinfo.port });
    waiter?.();
  });
  return {
    sock,
    port: sock.address().port,
    send: (buf, port) => sock.send(buf, port, '127.0.0.1'),
    async next(timeoutMs = 2000) {
      if (queue.length === 0) {
        await new Promise<void>((r) => {
          const t = setTimeout(() => {
            waiter = null;
            r();
          }, timeoutMs);
          waiter = () => {
            clearTimeout(t);
            waiter = null;
            r();
          };
        });
      }
      const m = queue.shift();
      if (!m) return null;
      const d = decode(m.msg);
      return { pkt: d.ok ? d.packet : null, msg: m.msg, port: m.port };
    },
    // dgram defers an unconnected send to the next tick (address lookup): close a little later
    close: () => void setTimeout(() => sock.close(), 10),
  };
}

interface RawGet {
  data: Buffer;
  oack: Record<string, string> | null;
  tid: number;
  error: { code: number; message: string } | null;
  wireBlocks: number[];
  lastLen: number;
}
/** A minimal RFC 1350/2347/7440 client on a raw socket (event driven, fast enough for 70k blocks). */
async function rawGet(
  port: number,
  file: string,
  o: { mode?: string; options?: Record<string, string>; ackDelayMs?: number; onData?: (block: number, tid: number) => void; timeoutMs?: number } = {},
): Promise<RawGet> {
  const sock = dgram.createSocket('udp4');
  sock.on('error', () => {});
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return new Promise<RawGet>((resolve, reject) => {
    let blksize = 512;
    let window = 1;
    let expected = 1;
    let wcount = 0;
    let tid = 0;
    const chunks: Buffer[] = [];
    const res: RawGet = { data: Buffer.alloc(0), oack: null, tid: 0, error: null, wireBlocks: [], lastLen: -1 };
    let closed = false;
    const closeSock = (): void => {
      if (!closed) {
        closed = true;
        sock.close();
      }
    };
    const timer = setTimeout(() => {
      closeSock();
      reject(new Error(`raw get ${file}: timeout (expected block ${expected})`));
    }, o.timeoutMs ?? 10_000);
    const done = (): void => {
      clearTimeout(timer);
      res.data = Buffer.concat(chunks);
      res.tid = tid;
      setTimeout(closeSock, (o.ackDelayMs ?? 0) + 5);
      resolve(res);
    };
    const ack = (n: number): void => {
      const b = encodeAck(n & 0xffff);
      const send = (): void => {
        if (!closed) sock.send(b, tid, '127.0.0.1');
      };
      if (o.ackDelayMs) setTimeout(send, o.ackDelayMs);
      else send();
    };
    sock.on('message', (msg, rinfo) => {
      if (tid === 0) tid = rinfo.port;
      else if (rinfo.port !== tid) return;
      const d = decode(msg);
      if (!d.ok) return;
      const p = d.packet;
      if (p.op === OP_OACK) {
        res.oack = { ...p.options };
        if (p.options.blksize) blksize = Number(p.options.blksize);
        if (p.options.windowsize) window = Number(p.options.windowsize);
        ack(0);
      } else if (p.op === OP_DATA) {
        if (p.block !== (expected & 0xffff)) return;
        o.onData?.(expected, tid);
        chunks.push(Buffer.from(p.data));
        res.wireBlocks.push(p.block);
        expected++;
        wcount++;
        if (p.data.length < blksize) {
          res.lastLen = p.data.length;
          ack(p.block);
          done();
        } else if (wcount >= window) {
          wcount = 0;
          ack(p.block);
        }
      } else if (p.op === OP_ERROR) {
        res.error = { code: p.code, message: p.message };
        done();
      }
    });
    sock.send(encodeRequest(OP_RRQ, file, o.mode ?? 'octet', o.options ?? {}), port, '127.0.0.1');
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function startServer(extra: Partial<TftpServerOptions> = {}): Promise<{ srv: TftpServer; port: number; log: ReturnType<typeof memoryLogger> }> {
  const log = memoryLogger('debug');
  const srv = createTftpServer({ listen: [{ host: '127.0.0.1', port: 0 }], resolve: resolver, log, ...extra });
  await srv.start();
  return { srv, port: srv.addresses()[0]!.port, log };
}

let main: { srv: TftpServer; port: number; log: ReturnType<typeof memoryLogger> };
const extraServers: TftpServer[] = [];

test.before(async () => {
  main = await startServer();
});
test.after(async () => {
  await Promise.all([main?.srv.close({ drainMs: 100 }), ...extraServers.map((s) => s.close({ drainMs: 100 }))]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------- codec

test('codec: an RRQ decodes with its options, option names case-insensitive', () => {
  const buf = encodeRequest(OP_RRQ, 'cfg/SEP0011.cnf.xml', 'OCTET', { BlkSize: '1428', TSIZE: '0', windowsize: '8' });
  const r = decodeRequest(buf);
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.is(r.packet.op, OP_RRQ);
  assert.is(r.packet.filename, 'cfg/SEP0011.cnf.xml');
  assert.is(r.packet.mode, 'octet');
  assert.equal({ ...r.packet.options }, { blksize: '1428', tsize: '0', windowsize: '8' });
});

test('codec: malformed requests are refused with a reason, never thrown', () => {
  const cases: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['1 byte', Buffer.from([0])],
    ['no NUL at all', Buffer.from('\x00\x01filename-without-terminator', 'latin1')],
    ['mode without NUL', Buffer.from('\x00\x01file\x00octet', 'latin1')],
    ['option value without NUL', Buffer.from('\x00\x01file\x00octet\x00blksize\x001428', 'latin1')],
    ['empty filename', Buffer.from('\x00\x01\x00octet\x00', 'latin1')],
    ['filename > 255 bytes', encodeRequest(OP_RRQ, 'a'.repeat(256), 'octet')],
    ['request > 512 bytes', Buffer.concat([encodeRequest(OP_RRQ, 'f', 'octet'), Buffer.from('x\x00y\x00'.repeat(130), 'latin1')])],
    ['control character in filename', Buffer.from('\x00\x01a\x1bb\x00octet\x00', 'latin1')],
    ['not a request', encodeAck(3)],
    ['unknown opcode', Buffer.from([0, 9, 1, 2, 0])],
  ];
  for (const [name, buf] of cases) {
    const r = decodeRequest(buf);
    assert.not.ok(r.ok, name);
    if (!r.ok) assert.type(r.reason, 'string', name);
  }
  for (let i = 0; i < 2000; i++) decode(rand(Math.floor(Math.random() * 700))); // never throws
  // a trailing NUL pad after the options is tolerated
  const padded = decodeRequest(Buffer.concat([encodeRequest(OP_RRQ, 'f', 'octet', { tsize: '0' }), Buffer.from([0])]));
  assert.ok(padded.ok);
});

test('codec: DATA/ACK/ERROR/OACK round-trip', () => {
  const d = decode(Buffer.concat([Buffer.from([0, OP_DATA, 0xff, 0xff]), Buffer.from('abc')]));
  assert.ok(d.ok && d.packet.op === OP_DATA && d.packet.block === 65535 && d.packet.data.toString() === 'abc');
  const a = decode(encodeAck(65535));
  assert.ok(a.ok && a.packet.op === OP_ACK && a.packet.block === 65535);
  const e = decode(encodeError(1, 'file not found'));
  assert.ok(e.ok && e.packet.op === OP_ERROR && e.packet.code === 1 && e.packet.message === 'file not found');
  const o = decode(encodeOack({ blksize: '1428', tsize: '3000' }));
  assert.ok(o.ok && o.packet.op === OP_OACK);
  if (o.ok && o.packet.op === OP_OACK) assert.equal({ ...o.packet.options }, { blksize: '1428', tsize: '3000' });
  assert.is(decodeRequest(encodeRequest(OP_WRQ, 'x', 'octet')).ok, true);
});

test('codec: netascii turns LF into CR LF and CR into CR NUL, and back', () => {
  const src = Buffer.from('a\nb\r\nc\rd');
  const na = toNetascii(src);
  assert.equal([...na], [...Buffer.from('a\r\nb\r\0\r\nc\r\0d', 'latin1')]);
  assert.equal(fromNetascii(na).toString('latin1'), src.toString('latin1'));
  const plain = Buffer.from('no line ends');
  assert.is(toNetascii(plain), plain);
});

// ---------------------------------------------------------------- real clients

test('tftp-hpa fetches a small config in octet mode, byte-identical (it sends no options: plain 512-byte lock-step)', async () => {
  const out = outFile('small');
  const r = await hpaGet(main.port, 'small.cfg', out);
  assert.is(r.code, 0, r.stderr);
  assert.ok(fs.readFileSync(out).equals(SMALL));
  const req = seen.filter((q) => q.file === 'small.cfg').at(-1)!;
  assert.is(req.mode, 'octet');
  assert.equal({ ...req.options }, {}, 'tftp-hpa 5.2 sends no RFC 2347 options');
  assert.is(req.remote.address, '127.0.0.1');
  assert.match(req.reqId, /^t[0-9a-z]+$/, 'the request id of the log lines (src/log.ts requestId)');
});

test('tftp-hpa fetches a file of exactly 4 x 512 bytes (ends with an empty DATA block) and a file in a subdirectory', async () => {
  const out = outFile('exact512');
  const r = await hpaGet(main.port, 'exact512.bin', out);
  assert.is(r.code, 0, r.stderr);
  assert.ok(fs.readFileSync(out).equals(EXACT_512));
  const out2 = outFile('sub');
  const r2 = await hpaGet(main.port, 'dir/SEP001122334455.cnf.xml', out2);
  assert.is(r2.code, 0, r2.stderr);
  assert.ok(fs.readFileSync(out2).equals(SMALL));
  const out3 = outFile('empty');
  const r3 = await hpaGet(main.port, 'empty.cfg', out3);
  assert.is(r3.code, 0, r3.stderr);
  assert.is(fs.statSync(out3).size, 0);
});

test('tftp-hpa in ascii (netascii) mode gets back the original LF text, CR and CR LF included', async () => {
  const out = outFile('text');
  const r = await hpaGet(main.port, 'text.cfg', out, 'ascii');
  assert.is(r.code, 0, r.stderr);
  assert.is(fs.readFileSync(out).toString('latin1'), TEXT.toString('latin1'));
  assert.is(seen.at(-1)!.mode, 'netascii');
});

test('tftp-hpa with an async resolver fetches the config', async () => {
  const out = outFile('async');
  const r = await hpaGet(main.port, 'async.cfg', out);
  assert.is(r.code, 0, r.stderr);
  assert.ok(fs.readFileSync(out).equals(SMALL));
});

test('atftp with blksize 1428, tsize and windowsize 8 fetches a 3 KB config', async () => {
  const out = outFile('small-atftp');
  const r = await atftpGet(main.port, 'small.cfg', out, ATFTP_OPTS);
  assert.is(r.code, 0, r.stderr);
  assert.ok(fs.readFileSync(out).equals(SMALL));
  const req = seen.at(-1)!;
  assert.is(req.options.blksize, '1428');
  assert.is(req.options.windowsize, '8');
  assert.ok('tsize' in req.options);
});

test('atftp with blksize 1428, tsize and windowsize 8 fetches a 5 MB file, sha256-identical', async () => {
  const out = outFile('big');
  const t0 = Date.now();
  const r = await atftpGet(main.port, 'big.bin', out, ATFTP_OPTS);
  assert.is(r.code, 0, r.stderr);
  assert.is(sha(fs.readFileSync(out)), sha(fs.readFileSync(BIG_PATH)));
  assert.ok(Date.now() - t0 < 10_000);
  assert.ok(main.log.lines.some((l) => l.includes('msg="tftp transfer done" file=big.bin') && l.includes('blksize=1428 windowsize=8')), 'one done line per large transfer');
});

test('atftp fetches a file of exactly 4 x blksize bytes (1428): the final empty block arrives, content intact', async () => {
  const out = outFile('exact1428');
  const r = await atftpGet(main.port, 'exact1428.bin', out, ATFTP_OPTS);
  assert.is(r.code, 0, r.stderr);
  assert.ok(fs.readFileSync(out).equals(EXACT_1428));
  const raw = await rawGet(main.port, 'exact1428.bin', { options: { blksize: '1428' } });
  assert.is(raw.lastLen, 0, 'last DATA is empty');
  assert.equal(raw.wireBlocks, [1, 2, 3, 4, 5]);
  assert.ok(raw.data.equals(EXACT_1428));
});

test('block numbers roll over past 65535: atftp fetches a 33.6 MB file at blksize 512 (65,686 blocks) intact', async () => {
  const out = outFile('rollover');
  const r = await atftpGet(main.port, 'rollover.bin', out, ['blksize 512', 'tsize enable']);
  assert.is(r.code, 0, r.stderr);
  assert.is(fs.statSync(out).size, ROLL_SIZE);
  assert.is(sha(fs.readFileSync(out)), sha(fs.readFileSync(ROLL_PATH)));
});

test('block numbers roll over past 65535: a raw client at blksize 8 sees ... 65535, 0, 1 ... and gets every byte', async () => {
  const raw = await rawGet(main.port, 'rollraw.bin', { options: { blksize: '8', windowsize: '16' }, timeoutMs: 20_000 });
  assert.is(raw.error, null);
  assert.ok(raw.data.equals(ROLL_RAW));
  const i = raw.wireBlocks.indexOf(65535);
  assert.equal(raw.wireBlocks.slice(i, i + 3), [65535, 0, 1]);
});

test('the OACK has the real tsize, the clamped blksize and windowsize, the echoed timeout; unknown options are left out', async () => {
  const raw = await rawGet(main.port, 'small.cfg', { options: { BLKSIZE: '100000', tsize: '0', Timeout: '3', windowsize: '1000', 'x-vendor': 'y' } });
  assert.equal(raw.oack, { blksize: '8192', tsize: '3000', timeout: '3', windowsize: '8' });
  assert.ok(raw.data.equals(SMALL));
  const tiny = await rawGet(main.port, 'small.cfg', { options: { blksize: '4', timeout: '0', 'x-vendor': 'y' } });
  assert.is(tiny.oack, null, 'no option accepted: DATA 1 comes directly');
  assert.equal(tiny.wireBlocks[0], 1);
  assert.ok(tiny.data.equals(SMALL));
});

test('a timeout option above max_timeout is left out of the OACK; one within it is echoed', async () => {
  const big = await rawGet(main.port, 'small.cfg', { options: { timeout: '255', tsize: '0' } });
  assert.equal(big.oack, { tsize: '3000' });
  assert.ok(big.data.equals(SMALL));
  const ok = await rawGet(main.port, 'small.cfg', { options: { timeout: '5' } });
  assert.equal(ok.oack, { timeout: '5' });
});

test('a transfer whose OACK is never acknowledged is dropped after firstAckMs, whatever timeout it asked for', async () => {
  const s = await startServer({ firstAckMs: 300, maxTimeoutS: 255 });
  extraServers.push(s.srv);
  const raw = await openRaw();
  raw.send(encodeRequest(OP_RRQ, 'small.cfg', 'octet', { timeout: '255', blksize: '1428' }), s.port);
  const first = await raw.next(1000);
  assert.is(first?.pkt?.op, OP_OACK);
  await sleep(700);
  raw.close();
  assert.equal(s.srv.stats(), { active: 0, served: 0, failed: 1, refused: 0, malformed: 0, unacknowledged: 1, busy: 0 });
  await s.srv.close();
});

test('one address gets at most perSource transfers at once; another address is still served', async () => {
  const s = await startServer({ perSource: 2 });
  extraServers.push(s.srv);
  const holders = [await openRaw(), await openRaw(), await openRaw()];
  for (const h of holders) h.send(encodeRequest(OP_RRQ, 'slow.bin', 'octet'), s.port);
  const answers = await Promise.all(holders.map((h) => h.next(1000)));
  assert.equal(answers.map((a) => a?.pkt?.op).sort(), [OP_DATA, OP_DATA, OP_ERROR].sort());
  const other = dgram.createSocket('udp4');
  await new Promise<void>((r) => other.bind(0, '127.0.0.2', () => r()));
  const got = await new Promise<number>((r) => {
    other.once('message', (m) => r(m.readUInt16BE(0)));
    other.send(encodeRequest(OP_RRQ, 'small.cfg', 'octet'), s.port, '127.0.0.1');
  });
  other.close();
  assert.is(got, OP_DATA, 'another address gets its file');
  for (const h of holders) h.close();
  await s.srv.close({ drainMs: 0 });
});

test('in netascii mode tsize reports the converted size', async () => {
  const raw = await rawGet(main.port, 'text.cfg', { mode: 'netascii', options: { tsize: '0' } });
  assert.is(raw.oack?.tsize, String(toNetascii(TEXT).length));
  assert.ok(fromNetascii(raw.data).equals(TEXT));
});

// ---------------------------------------------------------------- refusals and errors

test('a resolver error reaches the client: atftp prints the server message and fails, tftp-hpa prints it too', async () => {
  const r = await atftpGet(main.port, 'denied.cfg', outFile('denied'));
  assert.is.not(r.code, 0);
  assert.match(r.stderr + r.stdout, 'phone is not provisioned here');
  const h = await hpaGet(main.port, 'denied.cfg', outFile('denied2'));
  // tftp-hpa 5.2 reports "Error code 2: ..." but still exits 0 (and leaves an empty local file)
  assert.match(h.stdout + h.stderr, 'Error code 2: phone is not provisioned here');
  const nf = await rawGet(main.port, 'missing-file');
  assert.equal(nf.error, { code: 1, message: 'file not found' });
});

test('a resolver that throws or rejects gives ERROR 0 "internal error", logged with the reqId; the server keeps serving', async () => {
  const before = main.srv.stats();
  for (const name of ['throws', 'rejects']) {
    const r = await atftpGet(main.port, name, outFile(name));
    assert.is.not(r.code, 0);
    assert.match(r.stderr + r.stdout, 'internal error');
    const req = seen.filter((q) => q.file === name).at(-1)!;
    assert.ok(main.log.lines.some((l) => l.includes('level=error') && l.includes(`req=${req.reqId}`)), `error logged with req=${req.reqId}`);
  }
  assert.is(main.srv.stats().failed, before.failed + 2);
  const out = outFile('after-throw');
  assert.is((await hpaGet(main.port, 'small.cfg', out)).code, 0);
  assert.ok(fs.readFileSync(out).equals(SMALL));
});

test('a silent source sends nothing at all', async () => {
  const before = main.srv.stats().refused;
  const raw = await openRaw();
  raw.send(encodeRequest(OP_RRQ, 'banned', 'octet'), main.port);
  assert.is(await raw.next(300), null);
  raw.close();
  assert.is(main.srv.stats().refused, before + 1);
  assert.is(main.srv.stats().active, 0);
});

test('an upload (tftp-hpa put, atftp --put) is refused with "uploads are not accepted" and nothing is written', async () => {
  const calls = resolveCalls;
  const local = path.join(tmp, 'upload.txt');
  fs.writeFileSync(local, 'do not store me\n');
  const h = await run('tftp', ['127.0.0.1', String(main.port), '-m', 'binary', '-c', 'put', local, 'uploaded.txt']);
  assert.match(h.stdout + h.stderr, 'Error code 2: uploads are not accepted');
  const a = await run('atftp', ['--put', '-r', 'uploaded.txt', '-l', local, '127.0.0.1', String(main.port)]);
  assert.is.not(a.code, 0);
  assert.match(a.stderr + a.stdout, 'uploads are not accepted');
  assert.is(resolveCalls, calls, 'the resolver never sees a WRQ');
  assert.not.ok(fs.existsSync(path.join(tmp, 'uploaded.txt')));
  assert.is(fs.readFileSync(local, 'utf8'), 'do not store me\n');
});

test('mode "mail" and unknown modes get ERROR 4', async () => {
  for (const mode of ['mail', 'ebcdic']) {
    const r = await rawGet(main.port, 'small.cfg', { mode });
    assert.is(r.error?.code, 4, mode);
  }
});

test('garbage on the listening port is dropped and counted as malformed; the server stays up and serves', async () => {
  const before = main.srv.stats().malformed;
  const raw = await openRaw();
  const garbage: Buffer[] = [
    rand(100),
    Buffer.from([7]),
    Buffer.alloc(0),
    Buffer.from('\x00\x01small.cfg-octet-without-any-NUL', 'latin1'),
    Buffer.from([0, 42, 1, 2, 3, 0]), // unknown opcode
    encodeAck(1),
    Buffer.from([0, OP_DATA, 0, 1, 1, 2, 3]),
    encodeError(0, 'hello'),
    Buffer.alloc(2000, 0xff),
  ];
  for (const g of garbage) raw.send(g, main.port);
  assert.is(await raw.next(200), null, 'no answer to garbage');
  // a read request that is only too long gets a clear refusal instead of silence
  const tooLong = [
    Buffer.concat([encodeRequest(OP_RRQ, 'small.cfg', 'octet'), Buffer.from('a\x00b\x00'.repeat(150), 'latin1')]), // 600+ bytes
    encodeRequest(OP_RRQ, 'x'.repeat(300), 'octet'),
  ];
  for (const g of tooLong) {
    raw.send(g, main.port);
    const a = await raw.next(500);
    assert.ok(a, 'an answer to an over-long request');
    assert.is(a!.msg.readUInt16BE(0), 5);
    assert.is(a!.msg.readUInt16BE(2), 4);
    assert.match(a!.msg.subarray(4).toString('latin1'), /too long/);
  }
  raw.close();
  await sleep(50);
  assert.is(main.srv.stats().malformed, before + garbage.length + tooLong.length);
  const out = outFile('after-garbage');
  const r = await hpaGet(main.port, 'small.cfg', out);
  assert.is(r.code, 0);
  assert.ok(fs.readFileSync(out).equals(SMALL));
});

test('a packet from a wrong TID gets ERROR 5 "unknown transfer ID" and the transfer goes on', async () => {
  const intruder = await openRaw();
  let sentIntrusion = false;
  const got = await rawGet(main.port, 'slow.bin', {
    ackDelayMs: 5,
    onData: (block, tid) => {
      if (block === 3 && !sentIntrusion) {
        sentIntrusion = true;
        intruder.send(encodeAck(3), tid);
      }
    },
  });
  const reply = await intruder.next(1000);
  intruder.close();
  assert.ok(reply?.pkt?.op === OP_ERROR);
  if (reply?.pkt?.op === OP_ERROR) {
    assert.is(reply.pkt.code, 5);
    assert.is(reply.pkt.message, 'unknown transfer ID');
  }
  assert.ok(got.data.equals(SLOW), 'the real transfer completed');
});

test('a duplicate RRQ from the same address:port is ignored while its transfer runs', async () => {
  const calls = resolveCalls;
  const raw = await openRaw();
  const rrq = encodeRequest(OP_RRQ, 'slow.bin', 'octet');
  raw.send(rrq, main.port);
  raw.send(rrq, main.port);
  raw.send(rrq, main.port);
  const first = await raw.next(1000);
  assert.ok(first?.pkt?.op === OP_DATA);
  await sleep(100);
  const extra = await raw.next(50);
  assert.is(extra, null, 'only one DATA 1 (one transfer)');
  assert.is(resolveCalls, calls + 1);
  raw.send(encodeError(0, 'bye'), first!.port); // end it quietly
  raw.close();
  await sleep(20);
  assert.is(main.srv.stats().active, 0);
});

test('a client ERROR after the OACK (option refused) ends the transfer quietly, without retransmissions', async () => {
  const before = main.srv.stats();
  const raw = await openRaw();
  raw.send(encodeRequest(OP_RRQ, 'small.cfg', 'octet', { blksize: '1428' }), main.port);
  const oack = await raw.next(1000);
  assert.ok(oack?.pkt?.op === OP_OACK);
  raw.send(encodeError(8, 'option refused'), oack!.port);
  assert.is(await raw.next(1300), null, 'no OACK retransmission');
  raw.close();
  const after = main.srv.stats();
  assert.is(after.active, 0);
  assert.is(after.failed, before.failed + 1);
});

test('windowsize: an ACK for an earlier block makes the server resend from the block after it', async () => {
  const raw = await openRaw();
  raw.send(encodeRequest(OP_RRQ, 'slow.bin', 'octet', { windowsize: '4' }), main.port);
  const oack = await raw.next(1000);
  assert.is(oack?.pkt?.op, OP_OACK);
  const tid = oack!.port;
  raw.send(encodeAck(0), tid);
  const blocks = async (n: number): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const m = await raw.next(1000);
      if (m?.pkt?.op === OP_DATA) out.push(m.pkt.block);
    }
    return out;
  };
  assert.equal(await blocks(4), [1, 2, 3, 4]);
  raw.send(encodeAck(2), tid); // "3 was lost"
  assert.equal(await blocks(4), [3, 4, 5, 6]);
  raw.send(encodeAck(6), tid);
  assert.equal(await blocks(4), [7, 8, 9, 10]);
  raw.send(encodeAck(6), tid); // duplicate ACK of the window start: resend the window
  assert.equal(await blocks(4), [7, 8, 9, 10]);
  raw.send(encodeError(0, 'enough'), tid);
  raw.close();
});

// ---------------------------------------------------------------- timers, limits, lifecycle

test('a silent client gets retransmissions at the timeout, then the transfer is abandoned and logged', async () => {
  const s = await startServer({ timeoutMs: 60, retries: 2 });
  extraServers.push(s.srv);
  const raw = await openRaw();
  raw.send(encodeRequest(OP_RRQ, 'small.cfg', 'octet'), s.port);
  const got: number[] = [];
  for (;;) {
    const m = await raw.next(400);
    if (!m) break;
    if (m.pkt?.op === OP_DATA) got.push(m.pkt.block);
  }
  raw.close();
  assert.equal(got, [1, 1, 1], 'DATA 1 then 2 retransmissions');
  assert.equal(s.srv.stats(), { active: 0, served: 0, failed: 1, refused: 0, malformed: 0, unacknowledged: 0, busy: 0 });
  assert.ok(s.log.lines.some((l) => l.includes('tftp transfer abandoned') && l.includes('reason=timeout') && l.includes('file=small.cfg')));
  await s.srv.close();
});

test('beyond maxTransfers a request gets ERROR 0 "server busy"', async () => {
  const s = await startServer({ maxTransfers: 1 });
  extraServers.push(s.srv);
  const holder = await openRaw();
  holder.send(encodeRequest(OP_RRQ, 'slow.bin', 'octet'), s.port);
  const d1 = await holder.next(1000);
  assert.is(d1?.pkt?.op, OP_DATA);
  const r = await rawGet(s.port, 'small.cfg');
  assert.equal(r.error, { code: 0, message: 'server busy' });
  holder.send(encodeError(0, 'bye'), d1!.port);
  holder.close();
  await sleep(20);
  assert.is(s.srv.stats().refused, 1);
  const ok = await rawGet(s.port, 'small.cfg');
  assert.ok(ok.data.equals(SMALL));
  await s.srv.close();
});

test('close() lets a transfer in flight finish, then new requests find the port closed', async () => {
  const s = await startServer();
  const t0 = Date.now();
  let closing: Promise<void> | null = null;
  const transfer = rawGet(s.port, 'slow.bin', {
    ackDelayMs: 15, // about 21 blocks x 15 ms: still running when close() is called
    onData: (block) => {
      if (block === 2 && !closing) closing = s.srv.close({ drainMs: 5000 });
    },
  });
  const got = await transfer;
  assert.ok(got.data.equals(SLOW), 'the in-flight transfer completed');
  assert.ok(closing, 'close() was called mid-transfer');
  await closing;
  assert.ok(Date.now() - t0 < 4000, 'close() returned once the transfer was done, not after drainMs');
  assert.is(s.srv.stats().served, 1);
  // the listening port is closed: a connected UDP socket sees ICMP port unreachable
  const probe = dgram.createSocket('udp4');
  const refused = await new Promise<string>((resolve) => {
    const t = setTimeout(() => resolve('no answer'), 500);
    probe.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(e.code ?? 'error');
    });
    probe.on('message', () => {
      clearTimeout(t);
      resolve('answered');
    });
    probe.connect(s.port, '127.0.0.1', () => probe.send(encodeRequest(OP_RRQ, 'small.cfg', 'octet')));
  });
  probe.close();
  assert.is(refused, 'ECONNREFUSED');
});

test('close() abandons transfers still running after drainMs and tells their clients', async () => {
  const s = await startServer();
  const raw = await openRaw();
  raw.send(encodeRequest(OP_RRQ, 'slow.bin', 'octet'), s.port);
  const d1 = await raw.next(1000);
  assert.is(d1?.pkt?.op, OP_DATA);
  const t0 = Date.now();
  await s.srv.close({ drainMs: 150 });
  assert.ok(Date.now() - t0 < 1000);
  const err = await raw.next(500);
  raw.close();
  assert.ok(err?.pkt?.op === OP_ERROR && err.pkt.code === 0 && err.pkt.message === 'server shutting down');
  assert.equal(s.srv.stats(), { active: 0, served: 0, failed: 1, refused: 0, malformed: 0, unacknowledged: 0, busy: 0 });
});

test('start() rejects with APS_ERR_BIND naming host:port when the port is taken', async () => {
  const taken = main.port;
  const log = memoryLogger();
  const srv = createTftpServer({ listen: [{ host: '127.0.0.1', port: 0 }, { host: '127.0.0.1', port: taken }], resolve: resolver, log });
  let err: unknown;
  try {
    await srv.start();
  } catch (e) {
    err = e;
  }
  assert.instance(err, ApsError);
  const e = err as ApsError;
  assert.is(e.code, 'APS_ERR_BIND');
  assert.match(e.message, `127.0.0.1:${taken}`);
  assert.match(e.message, 'EADDRINUSE');
  assert.equal(srv.addresses(), [], 'the socket that did bind was closed again');
  await srv.close();
});

test('stats() counts what happened on the main server', () => {
  const st = main.srv.stats();
  assert.is(st.active, 0);
  assert.ok(st.served >= 12, `served ${st.served}`);
  assert.ok(st.malformed >= 11);
  assert.ok(st.refused >= 5);
});

test.run();
