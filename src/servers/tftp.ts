/**
 * TFTP server (read-only): RFC 1350 with RFC 2347 option negotiation, blksize (RFC 2348),
 * tsize and timeout (RFC 2349) and windowsize (RFC 7440).
 *
 * Design notes (performance matters: boot storms of hundreds of phones, 30 MB firmware images):
 *  - every transfer gets its own UDP socket (new TID) bound to the listening socket's address;
 *    sockets use a synchronous lookup for IP literals so bind() and send() complete synchronously
 *    (Node's default dns.lookup defers every unconnected send to the next tick);
 *  - DATA packets are built in a per-transfer ring of `window` slots (header + payload) and sent
 *    back to back; a retransmission resends slots without touching the source again. The final
 *    (short) block lives in its own buffer, so a send still queued in libuv can never go out with
 *    a stale length;
 *  - file sources: small files are read whole once; large ones are streamed through two
 *    read-ahead chunk buffers filled with fs.read on one fd (no whole-file reads);
 *  - one timer per transfer, refreshed when something is sent; no promise/await per packet;
 *  - netascii sources are converted once, up front (tsize must announce the converted size anyway);
 *  - the windowsize granted is also capped so that one window carries at most 64 KiB of payload.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import { ApsError } from '../errors.js';
import { normalizeIp } from '../net/address.js';
import { requestId, type Fields, type Logger } from '../log.js';
import {
  OP_ACK,
  OP_ERROR,
  OP_WRQ,
  TftpErr,
  MAX_BLKSIZE,
  MIN_BLKSIZE,
  decodeRequest,
  encodeError,
  encodeOack,
  toNetascii,
  writeDataHeader,
} from '../wire/tftp.js';

export interface TftpRequest {
  file: string;
  mode: 'octet' | 'netascii';
  remote: { address: string; port: number };
  reqId: string;
  options: Record<string, string>;
}
export type TftpSource =
  | { kind: 'buffer'; data: Buffer }
  | { kind: 'file'; path: string }
  | { kind: 'error'; code: number; message: string }
  | { kind: 'silent' };
export interface TftpServerOptions {
  listen: { host: string; port: number }[];
  resolve: (req: TftpRequest) => Promise<TftpSource> | TftpSource;
  log: Logger;
  /** Largest blksize granted (requests above are answered with this value). Default 8192. */
  maxBlksize?: number;
  /** Largest windowsize granted (RFC 7440). Default 64. */
  maxWindowsize?: number;
  /** Retransmit timeout in ms, default 1000; a client `timeout` option (1..255 s) overrides it. */
  timeoutMs?: number;
  /** Retransmissions of the same window before the transfer is abandoned. Default 5. */
  retries?: number;
  /** Concurrent transfers; beyond it requests get ERROR 0 "server busy". Default 5000. */
  maxTransfers?: number;
  /** Concurrent transfers from one address; beyond it that address gets "server busy". Default 32. */
  perSource?: number;
  /** Largest client `timeout` option acknowledged, in seconds (RFC 2349); a larger one is left out of the OACK. Default 5. */
  maxTimeoutS?: number;
  /** A transfer whose OACK or first DATA block is not acknowledged within this is dropped. Default 5000 ms. */
  firstAckMs?: number;
  /** addresses that get no answer at all, not even an error (banned ones) */
  silent?: (address: string) => boolean;
}
export interface TftpServer {
  start(): Promise<void>;
  addresses(): { host: string; port: number }[];
  close(opts?: { drainMs?: number }): Promise<void>;
  stats(): { active: number; served: number; failed: number; refused: number; malformed: number; unacknowledged: number; busy: number };
}

const SMALL_FILE_BYTES = 64 * 1024; // files up to this size are read whole, once per transfer
const CHUNK_TARGET_BYTES = 64 * 1024; // read-ahead chunk for streamed files (x2 per transfer)
/**
 * Payload budget for one window: the windowsize granted is also capped to floor(budget / blksize).
 * A whole window arrives as one burst; past ~128 KB of 8 KB datagrams, a default 208 KB socket
 * receive buffer (counted in kernel truesize) overflows and every window then stalls for a
 * retransmit timeout. RFC 7440 lets the server answer a smaller windowsize.
 */
const WINDOW_BUDGET_BYTES = 64 * 1024;
const LARGE_TRANSFER_BYTES = 1024 * 1024; // "transfer done" at info from this size, debug below
const EMPTY = Buffer.alloc(0);
const ERR_UNKNOWN_TID = encodeError(TftpErr.UNKNOWN_TID, 'unknown transfer ID');
const noop = (): void => {};

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;
/** IP literals are answered synchronously (bind/send then complete in the same tick); names go to dns. */
function fastLookup(hostname: string, options: dns.LookupOneOptions, callback: LookupCallback): void {
  const fam = net.isIP(hostname);
  if (fam !== 0) callback(null, hostname, fam);
  else dns.lookup(hostname, options, callback);
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function strictInt(v: string): number {
  return /^[0-9]{1,10}$/.test(v) ? Number(v) : -1;
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

interface Listener {
  sock: dgram.Socket;
  host: string;
  port: number;
  bindAddress: string;
  type: 'udp4' | 'udp6';
  closed: boolean;
}

/** Supplies block payloads. `fill` returns false when the data is not ready yet (it then calls onReady later). */
interface Feeder {
  fill(block: number, dst: Buffer, off: number, len: number): boolean;
  close(): void;
}

class BufferFeeder implements Feeder {
  constructor(
    private readonly data: Buffer,
    private readonly blksize: number,
  ) {}
  fill(block: number, dst: Buffer, off: number, len: number): boolean {
    const start = (block - 1) * this.blksize;
    this.data.copy(dst, off, start, start + len);
    return true;
  }
  close(): void {}
}

/**
 * Streams a file through two chunk buffers: while blocks are copied out of `cur`, the next chunk
 * is read into `nxt` with fs.read on the open fd. Consumption is strictly sequential (every block
 * is filled once; retransmissions come from the transfer's slots).
 */
class FileFeeder implements Feeder {
  private cur: Buffer;
  private nxt: Buffer;
  private curChunk = -1;
  private nxtChunk = -1;
  private nxtReady = false;
  private loading = false;
  private waiting = false;
  private closed = false;
  private readonly chunkBytes: number;

  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly blksize: number,
    window: number,
    private readonly onReady: () => void,
    private readonly onFail: (err: Error) => void,
  ) {
    const blocksPerChunk = Math.max(window, Math.ceil(CHUNK_TARGET_BYTES / blksize));
    this.chunkBytes = blocksPerChunk * blksize;
    const len = Math.min(this.chunkBytes, size);
    this.nxt = Buffer.allocUnsafe(len);
    this.cur = size > this.chunkBytes ? Buffer.allocUnsafe(len) : EMPTY;
    this.load(0); // into `nxt`; swapped in by the first fill()
  }

  /** Read chunk `chunk` into `nxt`. */
  private load(chunk: number): void {
    const start = chunk * this.chunkBytes;
    if (start >= this.size) return;
    const want = Math.min(this.chunkBytes, this.size - start);
    this.loading = true;
    this.nxtChunk = chunk;
    this.nxtReady = false;
    fs.read(this.fd, this.nxt, 0, want, start, (err, n) => {
      this.loading = false;
      if (this.closed) {
        fs.close(this.fd, noop);
        return;
      }
      if (err || n !== want) {
        this.onFail(err ?? new Error(`short read at offset ${start}: ${n} of ${want} bytes (file changed?)`));
        return;
      }
      this.nxtReady = true;
      if (this.waiting) {
        this.waiting = false;
        this.onReady();
      }
    });
  }

  fill(block: number, dst: Buffer, off: number, len: number): boolean {
    if (len === 0) return true;
    const pos = (block - 1) * this.blksize;
    const chunk = Math.floor(pos / this.chunkBytes);
    if (chunk !== this.curChunk) {
      if (chunk === this.nxtChunk && this.nxtReady) {
        const t = this.cur;
        this.cur = this.nxt;
        this.nxt = t;
        this.curChunk = chunk;
        this.nxtChunk = -1;
        this.nxtReady = false;
        this.load(chunk + 1);
      } else {
        if (!this.loading && this.nxtChunk !== chunk) this.load(chunk);
        this.waiting = true;
        return false;
      }
    }
    const o = pos - chunk * this.chunkBytes;
    this.cur.copy(dst, off, o, o + len);
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // never close the fd under an in-flight read (the number could be reused): the read callback closes it
    if (!this.loading) fs.close(this.fd, noop);
  }
}

const S_RESOLVING = 0;
const S_OACK = 1;
const S_DATA = 2;
const S_DONE = 3;

class Transfer {
  state = S_RESOLVING;
  sock: dgram.Socket | null = null;
  feeder: Feeder | null = null;
  timer: NodeJS.Timeout | null = null;
  size = 0;
  blksize = 512;
  window = 1;
  timeoutMs: number;
  nblocks = 1;
  acked = 0;
  sent = 0;
  filled = 0;
  nslots = 0;
  slotSize = 516;
  slots: Buffer = EMPTY;
  last: Buffer = EMPTY;
  lastReady = false;
  oack: Buffer | null = null;
  retries = 0;
  readonly t0 = Date.now();

  constructor(
    readonly srv: ServerImpl,
    readonly listener: Listener,
    readonly key: string,
    readonly req: TftpRequest,
    readonly raddr: string,
    readonly rport: number,
  ) {
    this.timeoutMs = srv.timeoutMs;
  }

  /** The resolver answered. */
  begin(src: TftpSource): void {
    if (this.state !== S_RESOLVING) return; // aborted meanwhile (shutdown)
    if (src === null || typeof src !== 'object') {
      this.internalError(new Error('resolver returned no source'));
      return;
    }
    switch (src.kind) {
      case 'silent':
        this.refuse(-1, 'silent');
        return;
      case 'error': {
        const c = src.code;
        this.refuse(Number.isInteger(c) && c >= 0 && c <= 0xffff ? c : TftpErr.NOT_DEFINED, String(src.message ?? ''));
        return;
      }
      case 'buffer': {
        if (!Buffer.isBuffer(src.data)) {
          this.internalError(new Error('resolver returned a buffer source without a Buffer'));
          return;
        }
        const data = this.req.mode === 'netascii' ? toNetascii(src.data) : src.data;
        this.startTransfer(data.length, (blk) => new BufferFeeder(data, blk));
        return;
      }
      case 'file':
        this.openFile(src.path);
        return;
      default:
        this.internalError(new Error(`resolver returned an unknown source kind`));
    }
  }

  internalError(e: unknown): void {
    if (this.state === S_DONE) return;
    this.srv.log.error('tftp request failed: internal error', {
      req: this.req.reqId,
      file: this.req.file,
      ip: this.req.remote.address,
      err: errMessage(e),
    });
    this.srv.sendFromListener(this.listener, TftpErr.NOT_DEFINED, 'internal error', this.rport, this.raddr);
    this.finish(false, 'internal error', false); // already logged above
  }

  /** Answer the request with an ERROR (code < 0: nothing at all) and forget it. */
  refuse(code: number, message: string): void {
    if (this.state === S_DONE) return;
    if (code >= 0) this.srv.sendFromListener(this.listener, code, message, this.rport, this.raddr);
    const log = this.srv.log;
    if (log.enabled('debug')) {
      log.debug('tftp request refused', {
        file: this.req.file,
        ip: this.req.remote.address,
        code: code >= 0 ? code : undefined,
        reason: message,
        req: this.req.reqId,
      });
    }
    this.state = S_DONE;
    this.srv.st.refused++;
    this.srv.forget(this);
  }

  private fsRefuse(err: NodeJS.ErrnoException): void {
    const c = err.code;
    if (c === 'ENOENT' || c === 'ENOTDIR' || c === 'EISDIR') this.refuse(TftpErr.FILE_NOT_FOUND, 'file not found');
    else if (c === 'EACCES' || c === 'EPERM') this.refuse(TftpErr.ACCESS_VIOLATION, 'access violation');
    else this.internalError(err);
  }

  private openFile(path: string): void {
    fs.open(path, 'r', (err, fd) => {
      if (err) {
        this.fsRefuse(err);
        return;
      }
      if (this.state !== S_RESOLVING) {
        fs.close(fd, noop);
        return;
      }
      fs.fstat(fd, (err2, st) => {
        if (err2 || this.state !== S_RESOLVING || !st.isFile()) {
          fs.close(fd, noop);
          if (err2) this.fsRefuse(err2);
          else if (this.state === S_RESOLVING) this.refuse(TftpErr.FILE_NOT_FOUND, 'file not found');
          return;
        }
        const size = st.size;
        if (size > SMALL_FILE_BYTES && this.req.mode === 'octet') {
          this.startTransfer(
            size,
            (blk, win) =>
              new FileFeeder(
                fd,
                size,
                blk,
                win,
                () => {
                  if (this.state === S_DATA) this.pump();
                },
                (e) => this.readFailed(e),
              ),
            () => fs.close(fd, noop),
          );
          return;
        }
        // small file or netascii: read it whole once, then serve it from memory
        readWhole(fd, size, (err3, data) => {
          fs.close(fd, noop);
          if (this.state !== S_RESOLVING) return;
          if (err3) {
            this.internalError(err3);
            return;
          }
          const body = this.req.mode === 'netascii' ? toNetascii(data) : data;
          this.startTransfer(body.length, (blk) => new BufferFeeder(body, blk));
        });
      });
    });
  }

  private readFailed(e: Error): void {
    if (this.state === S_DONE) return;
    this.srv.warnThrottled('read', 'tftp file read failed', { req: this.req.reqId, file: this.req.file, err: e.message });
    this.sendPacket(encodeError(TftpErr.NOT_DEFINED, 'read error'));
    this.finish(false, 'read error', true);
  }

  /** Negotiate options against the source size; returns the OACK to send, or null (start with DATA 1). */
  private negotiate(size: number): Buffer | null {
    const out = this.negotiateOptions(size);
    if (out === null) return null;
    // the window byte budget depends on the final blksize, whatever the option order was
    if (out.windowsize !== undefined) {
      this.window = Math.max(1, Math.min(this.window, Math.floor(WINDOW_BUDGET_BYTES / this.blksize)));
      out.windowsize = String(this.window);
    }
    return encodeOack(out);
  }

  private negotiateOptions(size: number): Record<string, string> | null {
    const o = this.req.options;
    const out: Record<string, string> = Object.create(null) as Record<string, string>;
    let any = false;
    for (const name of Object.keys(o)) {
      const v = o[name]!;
      if (name === 'blksize') {
        const n = strictInt(v);
        if (n >= MIN_BLKSIZE) {
          this.blksize = Math.min(n, this.srv.maxBlksize);
          out.blksize = String(this.blksize);
          any = true;
        }
      } else if (name === 'tsize') {
        out.tsize = String(size);
        any = true;
      } else if (name === 'timeout') {
        const n = strictInt(v);
        // RFC 2349 lets the server only accept the value or leave it out: one above max_timeout is
        // left out, and the retransmit interval is never longer than max_timeout either way
        if (n >= 1 && n <= this.srv.maxTimeoutS) {
          this.timeoutMs = n * 1000;
          out.timeout = String(n);
          any = true;
        }
      } else if (name === 'windowsize') {
        const n = strictInt(v);
        if (n >= 1 && n <= 65535) {
          this.window = Math.min(n, this.srv.maxWindowsize);
          out.windowsize = String(this.window);
          any = true;
        }
      }
    }
    return any ? out : null;
  }

  private startTransfer(size: number, mkFeeder: (blksize: number, window: number) => Feeder, onNoStart?: () => void): void {
    if (this.state !== S_RESOLVING) {
      onNoStart?.();
      return;
    }
    const oack = this.negotiate(size);
    const l = this.listener;
    try {
      const sock = dgram.createSocket({ type: l.type, lookup: fastLookup });
      this.sock = sock; // from here on finish() closes it
      sock.on('error', (e) => this.onSocketError(e));
      sock.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
      sock.bind({ port: 0, address: l.bindAddress, exclusive: true }); // synchronous with fastLookup
    } catch (e) {
      onNoStart?.();
      this.internalError(e);
      return;
    }
    if (this.state !== S_RESOLVING) {
      // bind failed synchronously ('error' already handled, socket closed)
      onNoStart?.();
      return;
    }
    const bs = this.blksize;
    this.size = size;
    this.nblocks = Math.floor(size / bs) + 1;
    this.slotSize = bs + 4;
    this.nslots = Math.min(this.window, this.nblocks - 1);
    this.slots = this.nslots > 0 ? Buffer.allocUnsafe(this.nslots * this.slotSize) : EMPTY;
    this.last = Buffer.allocUnsafe(4 + (size - (this.nblocks - 1) * bs));
    this.feeder = mkFeeder(bs, this.window);
    this.timer = setTimeout(this.onTimer, Math.min(this.timeoutMs, this.srv.firstAckMs));
    if (oack) {
      this.oack = oack;
      this.state = S_OACK;
      this.sendPacket(oack);
    } else {
      this.state = S_DATA;
      this.pump();
    }
  }

  private sendPacket(buf: Buffer): void {
    const s = this.sock;
    if (s === null) return;
    try {
      s.send(buf, 0, buf.length, this.rport, this.raddr);
    } catch {
      // socket already closed: nothing to do
    }
  }

  /** Send blocks sent+1 .. min(acked+window, nblocks), back to back. */
  pump(): void {
    const sock = this.sock!;
    const nblocks = this.nblocks;
    let end = this.acked + this.window;
    if (end > nblocks) end = nblocks;
    let b = this.sent;
    const rport = this.rport;
    const raddr = this.raddr;
    while (b < end) {
      const nb = b + 1;
      if (nb === nblocks) {
        const last = this.last;
        if (!this.lastReady) {
          if (!this.feeder!.fill(nb, last, 4, last.length - 4)) break;
          writeDataHeader(last, 0, nb & 0xffff);
          this.lastReady = true;
        }
        sock.send(last, 0, last.length, rport, raddr);
      } else {
        const off = ((nb - 1) % this.nslots) * this.slotSize;
        if (nb > this.filled) {
          if (!this.feeder!.fill(nb, this.slots, off + 4, this.blksize)) break;
          writeDataHeader(this.slots, off, nb & 0xffff);
          this.filled = nb;
        }
        sock.send(this.slots, off, this.slotSize, rport, raddr);
      }
      b = nb;
    }
    if (b !== this.sent) {
      this.sent = b;
      this.timer!.refresh();
    }
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (rinfo.port !== this.rport || rinfo.address !== this.raddr) {
      // RFC 1350: a packet from a wrong TID gets ERROR 5; the transfer goes on
      if (this.sock !== null && this.state !== S_DONE) {
        try {
          this.sock.send(ERR_UNKNOWN_TID, 0, ERR_UNKNOWN_TID.length, rinfo.port, rinfo.address);
        } catch {
          /* closed */
        }
      }
      return;
    }
    if (msg.length < 4 || msg[0] !== 0) return;
    const op = msg[1];
    if (op === OP_ACK) this.onAck((msg[2]! << 8) | msg[3]!);
    else if (op === OP_ERROR) this.onClientError(msg);
    // anything else from the peer (duplicate RRQ, DATA ...) is ignored
  }

  private onAck(n: number): void {
    const st = this.state;
    if (st === S_OACK) {
      if (n === 0) {
        this.state = S_DATA;
        this.oack = null;
        this.retries = 0;
        this.pump();
      }
      return;
    }
    if (st !== S_DATA) return;
    const a = this.acked;
    // map the 16-bit block number onto the 64-bit (JS number) sequence, at or after `acked`
    const cand = a + ((n - a) & 0xffff);
    if (cand > a && cand <= this.sent) {
      this.acked = cand;
      this.retries = 0;
      if (cand === this.nblocks) {
        this.finish(true, 'done', false);
        return;
      }
      // RFC 7440: an ACK for a block before the end of the window means the rest was lost; go on from it
      if (cand < this.sent) this.sent = cand;
      this.pump();
    } else if (cand === a && this.window > 1 && this.sent > a) {
      // re-ACK of the last in-order block (a lost block in the window): resend the window.
      // Not in lock-step mode, where a duplicate ACK must not trigger a resend (Sorcerer's Apprentice).
      this.sent = a;
      this.pump();
    }
  }

  private onClientError(msg: Buffer): void {
    const code = (msg[2]! << 8) | msg[3]!;
    let end = msg.indexOf(0, 4);
    if (end < 0) end = msg.length;
    const text = msg.toString('utf8', 4, Math.min(end, 4 + 200));
    this.finish(false, `client error ${code}${text ? ': ' + text : ''}`, false);
  }

  private onSocketError(e: Error): void {
    if (this.state === S_DONE) return;
    const code = (e as NodeJS.ErrnoException).code;
    if (this.state === S_RESOLVING) {
      // the transfer socket could not be bound (EMFILE, ENOBUFS ...): tell the client to come back later
      this.srv.warnThrottled('bind', 'tftp cannot open a transfer socket', { req: this.req.reqId, ip: this.req.remote.address, err: code ?? e.message });
      this.srv.sendFromListener(this.listener, TftpErr.NOT_DEFINED, 'server busy', this.rport, this.raddr);
      this.finish(false, 'no transfer socket', false);
      return;
    }
    this.srv.warnThrottled('socket', 'tftp transfer socket error', { req: this.req.reqId, ip: this.req.remote.address, err: code ?? e.message });
    this.finish(false, 'socket error', true);
  }

  private readonly onTimer = (): void => {
    const st = this.state;
    if (st !== S_OACK && st !== S_DATA) return;
    if (this.acked === 0 && Date.now() - this.t0 >= this.srv.firstAckMs) {
      // never acknowledged (a spoofed or flooding source): give the slot back within seconds
      this.srv.st.unacknowledged++;
      this.finish(false, 'never acknowledged', false);
      return;
    }
    if (this.retries >= this.srv.retries) {
      this.finish(false, 'timeout', true);
      return;
    }
    this.retries++;
    if (st === S_OACK) {
      this.sendPacket(this.oack!);
      this.timer!.refresh();
    } else {
      this.sent = this.acked;
      this.pump();
      // nothing could be sent (still waiting for the disk): re-arm anyway
      if (this.sent === this.acked) this.timer!.refresh();
    }
  };

  /** Shutdown: tell the client, then end. */
  abort(): void {
    if (this.state === S_DONE) return;
    if (this.state === S_RESOLVING) {
      this.finish(false, 'server shutting down', true);
      return;
    }
    this.sendPacket(encodeError(TftpErr.NOT_DEFINED, 'server shutting down'));
    this.finish(false, 'server shutting down', true);
  }

  finish(ok: boolean, reason: string, loud: boolean): void {
    if (this.state === S_DONE) return;
    const wasRunning = this.state === S_DATA || this.state === S_OACK;
    this.state = S_DONE;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.sock !== null) {
      try {
        this.sock.close();
      } catch {
        /* already closed */
      }
    }
    this.feeder?.close();
    const srv = this.srv;
    if (ok) srv.st.served++;
    else srv.st.failed++;
    const log = srv.log;
    if (ok) {
      const lvl = this.size >= LARGE_TRANSFER_BYTES ? 'info' : 'debug';
      if (log.enabled(lvl)) {
        log[lvl]('tftp transfer done', {
          file: this.req.file,
          ip: this.req.remote.address,
          bytes: this.size,
          ms: Date.now() - this.t0,
          blksize: this.blksize,
          windowsize: this.window,
          req: this.req.reqId,
        });
      }
    } else {
      const lvl = loud ? 'info' : 'debug';
      if (log.enabled(lvl)) {
        log[lvl](wasRunning ? 'tftp transfer abandoned' : 'tftp request failed', {
          file: this.req.file,
          ip: this.req.remote.address,
          reason,
          block: wasRunning ? this.acked : undefined,
          bytes: wasRunning ? Math.min(this.size, this.acked * this.blksize) : undefined,
          ms: Date.now() - this.t0,
          req: this.req.reqId,
        });
      }
    }
    srv.forget(this);
  }
}

function readWhole(fd: number, size: number, cb: (err: Error | null, data: Buffer) => void): void {
  const buf = Buffer.allocUnsafe(size);
  let got = 0;
  const step = (): void => {
    if (got >= size) {
      cb(null, buf);
      return;
    }
    fs.read(fd, buf, got, size - got, got, (err, n) => {
      if (err) {
        cb(err, EMPTY);
        return;
      }
      if (n === 0) {
        cb(null, buf.subarray(0, got)); // the file shrank: serve what is there
        return;
      }
      got += n;
      step();
    });
  };
  step();
}

class ServerImpl implements TftpServer {
  readonly log: Logger;
  readonly maxBlksize: number;
  readonly maxWindowsize: number;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly maxTransfers: number;
  readonly perSource: number;
  readonly maxTimeoutS: number;
  readonly firstAckMs: number;
  readonly silent?: (address: string) => boolean;
  readonly st = { served: 0, failed: 0, refused: 0, malformed: 0, unacknowledged: 0, busy: 0 };
  /** transfers in flight per source address */
  private readonly bySource = new Map<string, number>();
  private readonly transfers = new Map<string, Transfer>();
  private listeners: Listener[] = [];
  private started = false;
  private closing = false;
  private closed: Promise<void> | null = null;
  private drainWaiter: (() => void) | null = null;

  constructor(private readonly opts: TftpServerOptions) {
    this.log = opts.log;
    const clampInt = (v: number | undefined, def: number, lo: number, hi: number): number =>
      v === undefined || !Number.isFinite(v) ? def : Math.max(lo, Math.min(hi, Math.floor(v)));
    this.maxBlksize = clampInt(opts.maxBlksize, 8192, MIN_BLKSIZE, MAX_BLKSIZE);
    this.maxWindowsize = clampInt(opts.maxWindowsize, 64, 1, 65535);
    this.timeoutMs = clampInt(opts.timeoutMs, 1000, 1, 255_000);
    this.timeoutMs = Math.min(this.timeoutMs, clampInt(opts.maxTimeoutS, 5, 1, 255) * 1000);
    this.retries = clampInt(opts.retries, 5, 0, 1000);
    this.maxTransfers = clampInt(opts.maxTransfers, 5000, 1, 1_000_000);
    this.perSource = clampInt(opts.perSource, 32, 1, 1_000_000);
    this.maxTimeoutS = clampInt(opts.maxTimeoutS, 5, 1, 255);
    this.firstAckMs = clampInt(opts.firstAckMs, 5000, 1, 300_000);
    this.silent = opts.silent;
  }

  async start(): Promise<void> {
    if (this.started) return;
    if (this.closing) throw new ApsError('APS_ERR_BIND', 'TFTP server was closed; create a new one');
    this.started = true;
    try {
      for (const { host, port } of this.opts.listen) this.listeners.push(await this.bindOne(host, port));
    } catch (e) {
      for (const l of this.listeners) this.closeListener(l);
      this.listeners = [];
      this.started = false;
      throw e;
    }
  }

  private async bindOne(host: string, port: number): Promise<Listener> {
    const where = hostPort(host, port);
    let address = host === '' || host === '*' ? '0.0.0.0' : host;
    let family = net.isIP(address);
    if (family === 0) {
      try {
        const r = await dns.promises.lookup(address);
        address = r.address;
        family = r.family;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'EINVAL';
        throw new ApsError('APS_ERR_BIND', `cannot bind TFTP socket on ${where}: ${code} (cannot resolve host)`, { host, port, errno: code });
      }
    }
    const type = family === 6 ? 'udp6' : 'udp4';
    const sock = dgram.createSocket({ type, lookup: fastLookup });
    await new Promise<void>((resolve, reject) => {
      const onErr = (e: NodeJS.ErrnoException): void => {
        sock.removeListener('listening', onOk);
        try {
          sock.close();
        } catch {
          /* not running */
        }
        const code = e.code ?? 'EINVAL';
        reject(new ApsError('APS_ERR_BIND', `cannot bind TFTP socket on ${where}: ${code}`, { host, port, errno: code }));
      };
      const onOk = (): void => {
        sock.removeListener('error', onErr);
        resolve();
      };
      sock.once('error', onErr);
      sock.once('listening', onOk);
      try {
        sock.bind({ port, address, exclusive: true });
      } catch (e) {
        onErr(e as NodeJS.ErrnoException);
      }
    });
    const bound = sock.address();
    const l: Listener = { sock, host, port: bound.port, bindAddress: address, type, closed: false };
    try {
      sock.setRecvBufferSize(4 * 1024 * 1024); // the kernel caps it at rmem_max
    } catch {
      /* not fatal */
    }
    sock.on('error', (e) => this.log.warn('tftp listening socket error', { addr: hostPort(bound.address, bound.port), err: e.message }));
    sock.on('message', (msg, rinfo) => {
      try {
        this.onRequest(l, msg, rinfo);
      } catch (e) {
        this.log.error('tftp request handler failed', { ip: rinfo.address, err: errMessage(e) });
      }
    });
    return l;
  }

  addresses(): { host: string; port: number }[] {
    return this.listeners.map((l) => ({ host: l.bindAddress, port: l.port }));
  }

  stats(): { active: number; served: number; failed: number; refused: number; malformed: number; unacknowledged: number; busy: number } {
    return { active: this.transfers.size, ...this.st };
  }

  private readonly warned = new Map<string, { at: number; suppressed: number }>();
  /** A warning at most once a second per kind (with a count of the ones left out), for storms of the same failure. */
  warnThrottled(kind: string, msg: string, fields: Fields): void {
    const now = Date.now();
    const w = this.warned.get(kind);
    if (w !== undefined && now - w.at < 1000) {
      w.suppressed++;
      return;
    }
    this.log.warn(msg, { ...fields, suppressed: w?.suppressed || undefined });
    this.warned.set(kind, { at: now, suppressed: 0 });
  }

  sendFromListener(l: Listener, code: number, message: string, port: number, address: string): void {
    if (l.closed) return;
    try {
      l.sock.send(encodeError(code, message), port, address);
    } catch {
      /* socket closed */
    }
  }

  private onRequest(l: Listener, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closing) return;
    const r = decodeRequest(msg);
    const log = this.log;
    if (!r.ok) {
      this.st.malformed++;
      if (log.enabled('debug')) log.debug('tftp malformed packet dropped', { ip: rinfo.address, port: rinfo.port, bytes: msg.length, reason: r.reason });
      // a read or write request that is only too long gets a clear refusal (unless silenced)
      if (msg.length >= 2 && msg[0] === 0 && (msg[1] === 1 || msg[1] === 2) && /too long/.test(r.reason) && rinfo.port !== 0 && !this.silent?.(rinfo.address)) {
        this.sendFromListener(l, TftpErr.ILLEGAL_OPERATION, r.reason, rinfo.port, rinfo.address);
      }
      return;
    }
    const p = r.packet;
    if (rinfo.port === 0) {
      this.st.malformed++; // source port 0 cannot be answered
      return;
    }
    if (p.op === OP_WRQ && this.silent?.(rinfo.address)) return;
    if (p.op === OP_WRQ) {
      this.st.refused++;
      if (log.enabled('debug')) log.debug('tftp upload refused', { ip: rinfo.address, file: p.filename });
      this.sendFromListener(l, TftpErr.ACCESS_VIOLATION, 'uploads are not accepted', rinfo.port, rinfo.address);
      return;
    }
    const key = rinfo.address + '|' + rinfo.port;
    if (this.transfers.has(key)) return; // duplicate RRQ (client retransmission): the transfer already answers it
    if (p.mode !== 'octet' && p.mode !== 'netascii') {
      this.st.refused++;
      this.sendFromListener(l, TftpErr.ILLEGAL_OPERATION, `unsupported mode "${p.mode}"`, rinfo.port, rinfo.address);
      return;
    }
    const addr = rinfo.address;
    const mine = this.bySource.get(addr) ?? 0;
    if (this.transfers.size >= this.maxTransfers || mine >= this.perSource) {
      // one address never holds more than its share: the others keep getting their files
      this.st.refused++;
      this.st.busy++;
      if (mine >= this.perSource) this.warnThrottled('per-source', 'tftp: one address holds its share of transfers; more from it get "server busy"', { ip: normalizeIp(addr), per_source: this.perSource });
      else this.warnThrottled('busy', 'tftp: every transfer slot is taken; requests get "server busy"', { max_transfers: this.maxTransfers });
      if (!this.silent?.(addr)) this.sendFromListener(l, TftpErr.NOT_DEFINED, 'server busy', rinfo.port, rinfo.address);
      return;
    }
    const req: TftpRequest = {
      file: p.filename,
      mode: p.mode,
      remote: { address: normalizeIp(addr), port: rinfo.port },
      reqId: requestId('t'),
      options: p.options,
    };
    const t = new Transfer(this, l, key, req, addr, rinfo.port);
    this.transfers.set(key, t);
    this.bySource.set(addr, mine + 1);
    let src: Promise<TftpSource> | TftpSource;
    try {
      src = this.opts.resolve(req);
    } catch (e) {
      t.internalError(e);
      return;
    }
    if (src !== null && typeof src === 'object' && typeof (src as Promise<TftpSource>).then === 'function') {
      (src as Promise<TftpSource>).then(
        (s) => {
          try {
            t.begin(s);
          } catch (e) {
            t.internalError(e);
          }
        },
        (e: unknown) => t.internalError(e),
      );
    } else {
      try {
        t.begin(src as TftpSource);
      } catch (e) {
        t.internalError(e);
      }
    }
  }

  forget(t: Transfer): void {
    if (this.transfers.get(t.key) === t) {
      this.transfers.delete(t.key);
      const n = (this.bySource.get(t.raddr) ?? 1) - 1;
      if (n > 0) this.bySource.set(t.raddr, n);
      else this.bySource.delete(t.raddr);
    }
    if (this.drainWaiter !== null && this.transfers.size === 0) {
      const w = this.drainWaiter;
      this.drainWaiter = null;
      w();
    }
  }

  private closeListener(l: Listener): Promise<void> {
    if (l.closed) return Promise.resolve();
    l.closed = true;
    return new Promise<void>((resolve) => {
      try {
        l.sock.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }

  close(opts: { drainMs?: number } = {}): Promise<void> {
    if (this.closed) return this.closed;
    this.closing = true;
    const drainMs = Math.max(0, opts.drainMs ?? 5000);
    this.closed = (async () => {
      await Promise.all(this.listeners.map((l) => this.closeListener(l)));
      if (this.transfers.size > 0) {
        const timer = { t: undefined as NodeJS.Timeout | undefined };
        await new Promise<void>((resolve) => {
          this.drainWaiter = resolve;
          timer.t = setTimeout(resolve, drainMs);
        });
        clearTimeout(timer.t);
        this.drainWaiter = null;
        const left = [...this.transfers.values()];
        if (left.length > 0) {
          this.log.info('tftp shutdown: abandoning transfers still in flight', { count: left.length });
          for (const t of left) t.abort();
        }
      }
    })();
    return this.closed;
  }
}

export function createTftpServer(opts: TftpServerOptions): TftpServer {
  return new ServerImpl(opts);
}
