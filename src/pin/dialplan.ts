/**
 * The Asterisk dialplan context for unprovisioned phones (`apsctl pbx dialplan --pbx asterisk`):
 * any number dialled is answered, the caller keys the provisioning PIN and the extension wanted,
 * the FastAGI `register` script of apsd sets ${APS_RESULT}, a prompt says how it went, and the
 * call ends. Prompts are sounds of Asterisk's core sound set (en); replace them at will.
 *
 * Every line is `exten => pattern,priority,App(args)`: no `same =>`, so that it reads the same
 * in every Asterisk version and can be checked line by line.
 */
import net from 'node:net';
import { ApsError } from '../errors.js';

export interface DialplanOptions {
  /** [pbx] unprov_context */
  context: string;
  /** where the FastAGI server listens, as the PBX reaches it */
  agiHost: string;
  agiPort: number;
  /** most PIN digits read; default 16 */
  pinDigits?: number;
  /** most extension digits read; default 10 */
  extensionDigits?: number;
  prompts?: Partial<DialplanPrompts>;
}

export interface DialplanPrompts {
  pin: string;
  extension: string;
  ok: string;
  badPin: string;
  noExtension: string;
  goodbye: string;
}

/** Asterisk core sounds (en): "please enter your password followed by the pound key", "please enter your … extension", "thank you", "login incorrect", "that is not a valid extension", "goodbye". */
export const DEFAULT_PROMPTS: DialplanPrompts = {
  pin: 'agent-pass',
  extension: 'please-enter-your&extension',
  ok: 'auth-thankyou',
  badPin: 'auth-incorrect',
  noExtension: 'invalid',
  goodbye: 'vm-goodbye',
};

/** The FastAGI URL the dialplan calls: agi://host:port/register */
export function agiUrl(host: string, port: number): string {
  return `agi://${net.isIPv6(host) ? `[${host}]` : host}:${port}/register`;
}

export function asteriskDialplan(o: DialplanOptions): string {
  if (!/^[A-Za-z0-9_-]{1,79}$/.test(o.context)) throw new ApsError('APS_ERR_CONFIG', `"${o.context}" is not a dialplan context name`, { key: '[pbx] unprov_context' });
  if (!/^[A-Za-z0-9.:_-]+$/.test(o.agiHost) || !Number.isInteger(o.agiPort) || o.agiPort < 1 || o.agiPort > 65535) {
    throw new ApsError('APS_ERR_CONFIG', `"${o.agiHost}:${o.agiPort}" is not where a FastAGI server can listen`, { key: '[pin] agi_listen' });
  }
  const p = { ...DEFAULT_PROMPTS, ...o.prompts };
  for (const [k, v] of Object.entries(p)) if (!/^[A-Za-z0-9_/&-]+$/.test(v)) throw new ApsError('APS_ERR_USAGE', `prompt ${k} "${v}" is not a sound file name`);
  const pinDigits = o.pinDigits ?? 16;
  const extDigits = o.extensionDigits ?? 10;
  const url = agiUrl(o.agiHost, o.agiPort);
  const s = (prio: string, app: string) => `exten => s,${prio},${app}`;
  return [
    `; PIN registration of unprovisioned phones (aps). Their accounts (apsctl pbx accounts) land here.`,
    `; Any number dialled: key the provisioning PIN, then the extension this phone shall be.`,
    `; apsd answers over FastAGI at ${url} and sets APS_RESULT to one of`,
    `; OK, BADPIN, LOCKED, NOEXT, TAKEN, UNKNOWN.`,
    `[${o.context}]`,
    `exten => _[*#+0-9].,1,Goto(s,1)`,
    `exten => _[*#+0-9],1,Goto(s,1)`,
    s('1', 'Answer()'),
    s('n', 'Set(TIMEOUT(absolute)=180)'),
    s('n', 'Wait(1)'),
    s('n', `Read(PIN,${p.pin},${pinDigits},,2,10)`),
    s('n', 'GotoIf($["${PIN}" = ""]?bye)'),
    s('n', `Read(EXTEN_WANTED,${p.extension},${extDigits},,2,10)`),
    s('n', 'GotoIf($["${EXTEN_WANTED}" = ""]?bye)'),
    s('n', `AGI(${url},\${PIN},\${EXTEN_WANTED})`),
    s('n', 'Set(PIN=)'),
    s('n', 'GotoIf($["${APS_RESULT}" = "OK"]?ok)'),
    s('n', 'GotoIf($["${APS_RESULT}" = "BADPIN" | "${APS_RESULT}" = "LOCKED"]?badpin)'),
    s('n', 'GotoIf($["${APS_RESULT}" = "NOEXT" | "${APS_RESULT}" = "TAKEN"]?noext)'),
    s('n', 'Goto(bye)'),
    s('n(ok)', `Playback(${p.ok})`),
    s('n', 'Goto(bye)'),
    s('n(badpin)', `Playback(${p.badPin})`),
    s('n', 'Goto(bye)'),
    s('n(noext)', `Playback(${p.noExtension})`),
    s('n(bye)', `Playback(${p.goodbye})`),
    s('n', 'Hangup()'),
    '',
  ].join('\n');
}
