/**
 * The provisioning decision, one function for every protocol and for `apsctl explain`: resolve
 * the request name, find the device, check proof through the guard, render. It returns what
 * happened in terms each protocol maps to its own answer (src/errors.ts Refusals), with the
 * reasons it used (`trace`), which `apsctl explain` prints as they are.
 */
import { describeError } from '../errors.js';
import { macColon, type Mac } from '../mac.js';
import type { Logger } from '../log.js';
import type { Renderer, Rendered } from '../render/index.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import type { Guard, Proof } from './guard.js';
import { pickMatch, resolveName } from './resolve.js';

export interface TraceStep {
  step: 'ban' | 'name' | 'device' | 'proof' | 'lease' | 'credentials' | 'render' | 'user-agent';
  says: string;
}

export type Outcome = (
  | { kind: 'banned'; until: number; reason: string }
  | { kind: 'refused'; reason: string }
  | { kind: 'notfound'; reason: string; mac?: Mac }
  | { kind: 'noproof'; proof: Extract<Proof, { ok: false }>; mac: Mac; file: string }
  | { kind: 'rendered'; rendered: Rendered; file: string; mac?: Mac; secrets: boolean; proof?: Proof }
  | { kind: 'firmware'; path: string; size: number; file: string }
  | { kind: 'error'; message: string }
) & {
  trace: TraceStep[];
  /** what the request name says: the MAC it carries, or the model of a model-common file (evidence for the inventory) */
  named?: { mac?: Mac; model?: { vendor: string; id: string } };
};

export interface ProviderDeps {
  registry: () => VendorRegistry;
  store: Store;
  renderer: Renderer;
  guard: Guard;
  firmwareDir: () => string;
  log: Logger;
}

/**
 * apsctl writes from another process: a cheap check at the start of a request makes its change
 * (a device, a line, a lifted ban) visible to that very request. Under load the check runs at
 * most once per POLL_MS (a boot storm asks thousands of times a second): a change committed
 * more than POLL_MS before a request is always seen by it.
 */
const POLL_MS = 2;
const polledAt = new WeakMap<object, number>();
export function refresh(deps: Pick<ProviderDeps, 'store' | 'guard'>): void {
  const now = performance.now();
  if (now - (polledAt.get(deps.store) ?? -Infinity) < POLL_MS) return;
  polledAt.set(deps.store, now);
  if (deps.store.pollChanges()) deps.guard.reloadBans();
}

export interface RequestContext {
  proto: 'http' | 'https' | 'tftp';
  ip: string;
  userAgent?: string;
  /** apsctl explain: decide and say why, but count no offence */
  dryRun?: boolean;
}

export function provide(deps: ProviderDeps, rawName: string, ctx: RequestContext, prove: (mac: Mac) => Proof): Outcome {
  const trace: TraceStep[] = [];
  // the reasons are words for apsctl explain: built only when it asks (dry run), never on a phone's request
  const say = ctx.dryRun ? (step: TraceStep['step'], says: () => string) => void trace.push({ step, says: says() }) : () => undefined;
  const ban = deps.guard.banned(ctx.ip);
  if (ban) {
    say('ban', () => `${ctx.ip} is banned until ${new Date(ban.until).toISOString()} (${ban.reason}); lift with: apsctl ban lift ${ctx.ip}`);
    return { kind: 'banned', until: ban.until, reason: ban.reason, trace };
  }
  say('ban', () => `${ctx.ip} is not banned${deps.guard.exempt(ctx.ip) ? ' (trusted_subnets/allow: never banned)' : ''}`);
  const firmwareDir = deps.firmwareDir();
  const r = resolveName(rawName, deps.registry(), firmwareDir);
  if (r.kind === 'refused') {
    say('name', () => `refused: ${r.reason}`);
    return { ...r, trace };
  }
  if (r.kind === 'notfound') {
    say('name', () => `"${rawName.slice(0, 200)}" is no vendor file name and no file in firmware_dir (${firmwareDir})`);
    return { ...r, trace };
  }
  if (r.kind === 'firmware') {
    say('name', () => `a file in firmware_dir: ${r.path} (${r.size} bytes), served as it is`);
    return { kind: 'firmware', path: r.path, size: r.size, file: r.name, trace };
  }
  say('name', () => `"${r.name}" is ${r.matches.map((m) => `${m.file.vendor.name} ${m.file.spec.name}${m.file.spec.secrets ? ' (holds secrets)' : ''}`).join(' or ')}`);
  const common = r.matches.find((m) => m.file.scope !== 'device');
  if (common) {
    say('device', () => `a file common to ${common.model ? `every ${common.file.vendor.name} ${common.model.id}` : `every ${common.file.vendor.name} phone`}: no device, no secrets, no proof needed`);
    const out = render(deps, common, undefined, r.name, undefined, trace);
    if (common.model) out.named = { model: { vendor: common.file.vendor.id, id: common.model.id } };
    return out;
  }
  const mac = r.matches[0].mac!;
  const named = { mac };
  const uaWhy = deps.guard.checkUserAgent(ctx.ip, ctx.proto, mac, ctx.userAgent, !ctx.dryRun);
  if (uaWhy) say('user-agent', () => `${uaWhy}: counts as an offence against ${ctx.ip}`);
  // The OUI (public, fixed) narrows which vendor's file this is; proof for a file with secrets
  // is checked before the device lookup is revealed, so that a prober without proof cannot
  // tell a known MAC from an unknown one (both get the same refusal). The miss still counts.
  const ouiVendor = deps.registry().vendorOfMac(mac);
  const likely = ouiVendor && r.matches.some((m) => m.file.vendor === ouiVendor)
    ? r.matches.filter((m) => m.file.vendor === ouiVendor)
    : r.matches;
  const picked = pickMatch(r.matches, deps.store);
  const unknown = !picked || 'unknownMac' in picked;
  // every request for one device's file without proof counts its MAC against the source, known
  // or unknown alike (guard.unproved): neither the answer nor the time of a ban tells them apart
  const unproved = () => {
    if (!ctx.dryRun) deps.guard.unproved(ctx.ip, mac, { proto: ctx.proto, file: r.name, unknown });
  };
  const provedBy = (p: Proof) => {
    if (p.ok && !ctx.dryRun) deps.guard.proved(ctx.ip, mac);
  };
  if (unknown) {
    say('device', () => `${macColon(mac)} is not a device (apsctl device list): without proof the MAC counts against ${ctx.ip}, as a known one would`);
  } else {
    const d = picked.device!;
    say('device', () => `${macColon(mac)}: ${deps.registry().get(d.vendor)?.name ?? d.vendor} ${d.model}, tenant ${d.tenant}, template ${d.template ?? '(none: built-in defaults)'}, state ${d.state}`);
  }
  let proof: Proof | undefined;
  if (likely.some((m) => m.file.spec.secrets)) {
    proof = prove(mac);
    provedBy(proof);
    if (!proof.ok) {
      const failed = proof;
      say('proof', () => `a name that may hold secrets needs proof before the device is looked up (so that probing learns nothing): ${proofSays(failed, trace)}`);
      unproved();
      return { kind: 'noproof', proof, mac, file: r.name, trace, named };
    }
  }
  if (!proof?.ok && !(picked && !('unknownMac' in picked) && picked.match.file.spec.secrets)) unproved();
  if (!picked) return { kind: 'notfound', reason: 'no such file', trace, named };
  if ('unknownMac' in picked) return { kind: 'notfound', reason: 'unknown MAC', mac, trace, named };
  const d = picked.device!;
  if (picked.match.file.spec.secrets && !proof) {
    proof = prove(mac);
    provedBy(proof);
    if (!proof.ok) {
      unproved();
      const failed = proof;
      say('proof', () => `${picked.match.file.spec.name} holds secrets: ${proofSays(failed, trace)}`);
      return { kind: 'noproof', proof, mac, file: r.name, trace, named };
    }
  }
  if (proof?.ok) say('proof', () => `proved by ${proof.by}`);
  else if (!picked.match.file.spec.secrets) say('proof', () => `${picked.match.file.spec.name} holds no secrets: no proof needed`);
  const out = render(deps, picked.match, d, r.name, proof, trace);
  out.named = named;
  return out;
}

function proofSays(p: Extract<Proof, { ok: false }>, trace: TraceStep[]): string {
  if (p.lease) trace.push({ step: 'lease', says: p.lease });
  if (p.credentials) trace.push({ step: 'credentials', says: p.credentials });
  return `no proof (${p.reason})${p.challenge ? ': HTTP credentials would prove it' : ''}`;
}

function render(deps: ProviderDeps, match: Parameters<Renderer['render']>[0], device: Parameters<Renderer['render']>[1], file: string, proof: Proof | undefined, trace: TraceStep[]): Outcome {
  try {
    const rendered = deps.renderer.render(match, device);
    for (const w of rendered.warnings) trace.push({ step: 'render', says: w });
    return { kind: 'rendered', rendered, file, mac: device?.mac, secrets: match.file.spec.secrets, proof, trace };
  } catch (e) {
    deps.log.error('render failed', { file, mac: device?.mac, err: describeError(e) });
    trace.push({ step: 'render', says: `the file could not be rendered: ${describeError(e)}` });
    return { kind: 'error', message: describeError(e), trace };
  }
}
