import fs from 'node:fs';
/**
 * logfmt logging. Two channels: the main log (stderr, read by journald) and the security
 * channel (security events in a stable format for fail2ban and auditors). No timestamps
 * when journald is the sink (JOURNAL_STREAM set); otherwise an ISO time first.
 * Secrets are never passed to a logger: fields named like secrets are redacted anyway.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const REDACT = /pass|secret|pin|token|authorization|ha1/i;

export type Fields = Record<string, string | number | boolean | undefined | null>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** The security channel: `security event=<name> key=value ...`. */
  security(event: string, fields?: Fields): void;
  child(fields: Fields): Logger;
  setLevel(level: Level): void;
  enabled(level: Level): boolean;
}

function fmtValue(v: string | number | boolean): string {
  const s = String(v);
  return s === '' || /[\s"=\\]/.test(s) ? JSON.stringify(s) : s;
}

export function logfmt(fields: Fields): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null) continue;
    parts.push(`${k}=${REDACT.test(k) ? '[redacted]' : fmtValue(v)}`);
  }
  return parts.join(' ');
}

export interface LoggerOptions {
  level?: Level;
  write?: (line: string) => void;
  writeSecurity?: (line: string) => void;
  timestamps?: boolean;
}

export function createLogger(opts: LoggerOptions = {}, base: Fields = {}): Logger {
  const state = { level: opts.level ?? 'info' };
  const write = opts.write ?? batchedStderr();
  const writeSec = opts.writeSecurity ?? write;
  const stamps = opts.timestamps ?? !process.env.JOURNAL_STREAM;
  const make = (ctx: Fields): Logger => {
    const emit = (level: Level, msg: string, fields?: Fields) => {
      if (ORDER[level] < ORDER[state.level]) return;
      const head = stamps ? `time=${new Date().toISOString()} ` : '';
      write(`${head}level=${level} msg=${fmtValue(msg)}${tail({ ...ctx, ...fields })}`);
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      security: (event, f) => {
        const head = stamps ? `time=${new Date().toISOString()} ` : '';
        writeSec(`${head}security event=${event}${tail({ ...ctx, ...f })}`);
      },
      child: (f) => make({ ...ctx, ...f }),
      setLevel: (l) => { state.level = l; },
      enabled: (l) => ORDER[l] >= ORDER[state.level],
    };
  };
  return make(base);
}

/**
 * Lines to stderr, gathered per event-loop turn into one write: under a boot storm this is
 * one system call per turn instead of one per line. Flushed synchronously at exit.
 */
let pending: string[] = [];
let scheduled = false;
function flushStderr(): void {
  scheduled = false;
  if (!pending.length) return;
  const text = pending.join('');
  pending = [];
  process.stderr.write(text);
}
function batchedStderr(): (line: string) => void {
  return (line: string) => {
    pending.push(line + '\n');
    if (!scheduled) {
      scheduled = true;
      setImmediate(flushStderr);
    }
  };
}
process.on('exit', flushStderr);
export { flushStderr };

/** Appends lines to a file (the security log), gathered per event-loop turn like stderr. */
export function fileWriter(file: string): (line: string) => void {
  let buf: string[] = [];
  let queued = false;
  const flush = () => {
    queued = false;
    if (!buf.length) return;
    const text = buf.join('');
    buf = [];
    try {
      fs.appendFileSync(file, text, { mode: 0o640 });
    } catch (e) {
      process.stderr.write(`level=error msg="cannot write the security log" file=${file} err=${JSON.stringify((e as Error).message)}\n`);
    }
  };
  process.on('exit', flush);
  return (line) => {
    buf.push(line + '\n');
    if (!queued) {
      queued = true;
      setImmediate(flush);
    }
  };
}

function tail(fields: Fields): string {
  const s = logfmt(fields);
  return s ? ' ' + s : '';
}

/** A logger that keeps lines in memory: for tests. */
export function memoryLogger(level: Level = 'debug'): Logger & { lines: string[] } {
  const lines: string[] = [];
  const l = createLogger({ level, write: (x) => lines.push(x), timestamps: false });
  return Object.assign(l, { lines });
}

const reqCounters = new Map<string, number>();
/**
 * A request id for log lines (`req=`): a protocol prefix and a per-prefix counter in base 36
 * (h1a, t2b, pnp-3c), unique within one apsd run, short enough to grep for.
 */
export function requestId(prefix: string): string {
  const n = ((reqCounters.get(prefix) ?? 0) + 1) % 0x7fffffff;
  reqCounters.set(prefix, n);
  return prefix + n.toString(36);
}
