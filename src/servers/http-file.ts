/**
 * A file of firmware_dir over HTTP, streamed from disk (never read whole): ETag and
 * Last-Modified from its size and modification time, conditional GETs (If-None-Match, else
 * If-Modified-Since → 304), and one byte range (Range: bytes=a-b, a-, -n → 206; past the end →
 * 416), honoured only while If-Range still matches, so that an interrupted download resumes.
 * Several ranges in one request get the whole file (200), as RFC 9110 allows.
 */
import fs from 'node:fs';
import type http from 'node:http';

export interface FileAnswer {
  status: number;
  /** bytes sent (of the body), for the log */
  bytes: number;
  /** the file's stream (GET with a body), for the caller's error handling */
  stream?: fs.ReadStream;
}

export function etagOf(st: Pick<fs.Stats, 'size' | 'mtimeMs'>): string {
  return `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
}

/** The byte range a Range header asks for, null for none (or several: the whole file), 'unsatisfiable' when it starts past the end. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size) return 'unsatisfiable';
  if (end < start) return null;
  return { start, end };
}

function notModified(req: http.IncomingMessage, etag: string, mtimeMs: number): boolean {
  const inm = req.headers['if-none-match'];
  if (inm !== undefined) return inm.split(',').map((s) => s.trim().replace(/^W\//, '')).some((t) => t === etag || t === '*');
  const ims = req.headers['if-modified-since'];
  if (ims === undefined) return false;
  const t = Date.parse(ims);
  return Number.isFinite(t) && Math.floor(mtimeMs / 1000) * 1000 <= t;
}

/** If-Range: the range holds only while the validator (ETag or date) is the file's. */
function rangeStillValid(req: http.IncomingMessage, etag: string, mtimeMs: number): boolean {
  const ir = req.headers['if-range'] as string | undefined;
  if (ir === undefined) return true;
  if (ir.startsWith('"') || ir.startsWith('W/')) return ir === etag;
  const t = Date.parse(ir);
  return Number.isFinite(t) && Math.floor(mtimeMs / 1000) * 1000 === t;
}

/** Answers GET/HEAD for one file; the caller has decided that the requester may have it. */
export function sendFile(req: http.IncomingMessage, res: http.ServerResponse, path: string, method: string): FileAnswer {
  const st = fs.statSync(path);
  const etag = etagOf(st);
  const headers: http.OutgoingHttpHeaders = {
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: etag,
    'Last-Modified': new Date(st.mtimeMs).toUTCString(),
  };
  if (notModified(req, etag, st.mtimeMs)) {
    res.writeHead(304, headers);
    res.end();
    return { status: 304, bytes: 0 };
  }
  const range = rangeStillValid(req, etag, st.mtimeMs) ? parseRange(req.headers.range, st.size) : null;
  if (range === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'Content-Range': `bytes */${st.size}`, 'Content-Length': 0 });
    res.end();
    return { status: 416, bytes: 0 };
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? st.size - 1;
  const length = st.size === 0 ? 0 : end - start + 1;
  const status = range ? 206 : 200;
  res.writeHead(status, { ...headers, 'Content-Length': length, ...(range ? { 'Content-Range': `bytes ${start}-${end}/${st.size}` } : {}) });
  if (method === 'HEAD' || length === 0) {
    res.end();
    return { status, bytes: 0 };
  }
  const stream = fs.createReadStream(path, { start, end, highWaterMark: 64 * 1024 });
  // a download dropped half-way: stop reading (the file descriptor closes with the stream)
  res.once('close', () => {
    if (!res.writableFinished) stream.destroy();
  });
  return { status, bytes: length, stream };
}
