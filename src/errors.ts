/**
 * The one registry of error codes. Every error that reaches a user carries one of these
 * codes and the context needed to act on it (file, line, key, what was expected).
 */
import { TftpErr } from './wire/tftp.js';

/** What an error means, and how each protocol answers it: one row per code, as fastify's lib/errors.js. */
export interface ErrorAnswer {
  message: string;
  /** the HTTP status a request that ends in this error gets */
  http: number;
  /** the TFTP error code (RFC 1350) a read request that ends in this error gets */
  tftp: number;
}

const row = (message: string, http: number, tftp: number): ErrorAnswer => ({ message, http, tftp });

export const ErrorCodes = {
  APS_ERR_CONFIG: row('a configuration file is invalid', 500, TftpErr.NOT_DEFINED),
  APS_ERR_CONFIG_MISSING: row('a configuration file or directory is missing', 500, TftpErr.NOT_DEFINED),
  APS_ERR_VENDOR: row('vendor data is invalid', 500, TftpErr.NOT_DEFINED),
  APS_ERR_TEMPLATE: row('a template is invalid or cannot be rendered', 500, TftpErr.NOT_DEFINED),
  APS_ERR_STORE: row('the state database cannot be opened, migrated or written', 503, TftpErr.NOT_DEFINED),
  APS_ERR_MAC: row('a MAC address is malformed', 400, TftpErr.FILE_NOT_FOUND),
  APS_ERR_NOT_FOUND: row('the named object does not exist', 404, TftpErr.FILE_NOT_FOUND),
  APS_ERR_EXISTS: row('the named object already exists', 409, TftpErr.FILE_EXISTS),
  APS_ERR_USAGE: row('a command was used wrongly', 400, TftpErr.ILLEGAL_OPERATION),
  APS_ERR_BIND: row('a socket could not be bound', 500, TftpErr.NOT_DEFINED),
  APS_ERR_PATH: row('a requested path was refused', 403, TftpErr.ACCESS_VIOLATION),
  APS_ERR_PROTOCOL: row('a packet or request was malformed', 400, TftpErr.ILLEGAL_OPERATION),
  APS_ERR_CAPTURE: row('packet capture could not start', 500, TftpErr.NOT_DEFINED),
  APS_ERR_FIRMWARE: row('a firmware image or rollout was refused (in use, other bytes, wrong model)', 409, TftpErr.NOT_DEFINED),
  APS_ERR_PIN: row('a PIN registration was refused', 403, TftpErr.ACCESS_VIOLATION),
} as const;

/**
 * The refusals of the provisioning decision (src/provisioning/provider.ts), each with its
 * answer. `noproof` is 401 when HTTP authentication could prove the requester, else 403.
 */
export const Refusals = {
  refused: row('refused', 403, TftpErr.ACCESS_VIOLATION),
  notfound: row('not found', 404, TftpErr.FILE_NOT_FOUND),
  noproof: row('this file holds secrets and no proof was given', 403, TftpErr.ACCESS_VIOLATION),
  challenge: row('authentication required', 401, TftpErr.ACCESS_VIOLATION),
  error: row('the file could not be rendered; see the apsd log', 500, TftpErr.NOT_DEFINED),
  method: row('only GET and HEAD are served; uploads are not accepted', 405, TftpErr.ILLEGAL_OPERATION),
  busy: row('server busy, try again', 503, TftpErr.NOT_DEFINED),
} as const;

export type Refusal = keyof typeof Refusals;

export type ErrorCode = keyof typeof ErrorCodes;

export interface ErrorContext {
  file?: string;
  line?: number;
  key?: string;
  expected?: string;
  [k: string]: unknown;
}

export class ApsError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;
  constructor(code: ErrorCode, message: string, context: ErrorContext = {}) {
    super(message);
    this.name = 'ApsError';
    this.code = code;
    this.context = context;
  }

  /** `file:line: key: message (expected ...)` — the form an administrator reads in journalctl. */
  describe(): string {
    const { file, line, key, expected } = this.context;
    const where = file ? `${file}${line ? `:${line}` : ''}: ` : '';
    const k = key ? `${key}: ` : '';
    const exp = expected ? ` (expected ${expected})` : '';
    return `${this.code}: ${where}${k}${this.message}${exp}`;
  }
}

export function isApsError(e: unknown): e is ApsError {
  return e instanceof ApsError;
}

/** The one way an error becomes a line for a log or a terminal: an ApsError with its file, line and key; anything else by its message. */
export function describeError(e: unknown): string {
  if (e instanceof ApsError) return e.describe();
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The answer a protocol gives for an error that ends a request. */
export function answerFor(e: unknown): ErrorAnswer {
  return e instanceof ApsError ? ErrorCodes[e.code] : ErrorCodes.APS_ERR_TEMPLATE;
}
