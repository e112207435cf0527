/**
 * The one registry of error codes. Every error that reaches a user carries one of these
 * codes and the context needed to act on it (file, line, key, what was expected).
 */
export const ErrorCodes = {
  APS_ERR_CONFIG: 'a configuration file is invalid',
  APS_ERR_CONFIG_MISSING: 'a configuration file or directory is missing',
  APS_ERR_VENDOR: 'vendor data is invalid',
  APS_ERR_TEMPLATE: 'a template is invalid or cannot be rendered',
  APS_ERR_STORE: 'the state database cannot be opened or migrated',
  APS_ERR_MAC: 'a MAC address is malformed',
  APS_ERR_NOT_FOUND: 'the named object does not exist',
  APS_ERR_EXISTS: 'the named object already exists',
  APS_ERR_USAGE: 'a command was used wrongly',
  APS_ERR_BIND: 'a socket could not be bound',
  APS_ERR_PATH: 'a requested path was refused',
  APS_ERR_PROTOCOL: 'a packet or request was malformed',
  APS_ERR_CAPTURE: 'packet capture could not start',
  APS_ERR_PIN: 'a PIN registration was refused',
} as const;

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
