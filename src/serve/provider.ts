/**
 * What both servers do with a request name: resolve it, check proof through the guard,
 * render, and say what happened in terms each protocol maps to its own answer.
 */
import type { Mac } from '../mac.js';
import type { Logger } from '../log.js';
import type { Renderer, Rendered } from '../render/index.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import type { Guard, Proof } from './guard.js';
import { pickMatch, resolveName } from './resolve.js';

export type Outcome =
  | { kind: 'refused'; reason: string }
  | { kind: 'notfound'; reason: string; mac?: Mac }
  | { kind: 'noproof'; proof: Extract<Proof, { ok: false }>; mac: Mac; file: string }
  | { kind: 'rendered'; rendered: Rendered; file: string; mac?: Mac; secrets: boolean; proof?: Proof }
  | { kind: 'firmware'; path: string; size: number; file: string }
  | { kind: 'error'; message: string };

export interface ProviderDeps {
  registry: () => VendorRegistry;
  store: Store;
  renderer: Renderer;
  guard: Guard;
  firmwareDir: () => string;
  log: Logger;
}

/**
 * apsctl writes from another process: a cheap check at the start of every request makes its
 * change (a device, a line, a lifted ban) visible to that very request.
 */
export function refresh(deps: Pick<ProviderDeps, 'store' | 'guard'>): void {
  if (deps.store.pollChanges()) deps.guard.reloadBans();
}

export interface RequestContext {
  proto: 'http' | 'https' | 'tftp';
  ip: string;
  userAgent?: string;
}

export function provide(deps: ProviderDeps, rawName: string, ctx: RequestContext, prove: (mac: Mac) => Proof): Outcome {
  const r = resolveName(rawName, deps.registry(), deps.firmwareDir());
  if (r.kind === 'refused' || r.kind === 'notfound') return r;
  if (r.kind === 'firmware') return { kind: 'firmware', path: r.path, size: r.size, file: r.name };
  const common = r.matches.find((m) => m.file.scope !== 'device');
  if (common) return render(deps, common, undefined, r.name);
  const mac = r.matches[0].mac!;
  deps.guard.checkUserAgent(ctx.ip, ctx.proto, mac, ctx.userAgent);
  // The OUI (public, fixed) narrows which vendor's file this is; proof for a file with secrets
  // is checked before the device lookup is revealed, so that a prober without proof cannot
  // tell a known MAC from an unknown one (both get the same refusal). The miss still counts.
  const ouiVendor = deps.registry().vendorOfMac(mac);
  const likely = ouiVendor && r.matches.some((m) => m.file.vendor === ouiVendor)
    ? r.matches.filter((m) => m.file.vendor === ouiVendor)
    : r.matches;
  const picked = pickMatch(r.matches, deps.store);
  const unknown = !picked || 'unknownMac' in picked;
  if (unknown) deps.guard.note(ctx.ip, 'unknown-mac', { proto: ctx.proto, mac, file: r.name });
  let proof: Proof | undefined;
  if (likely.some((m) => m.file.spec.secrets)) {
    proof = prove(mac);
    if (!proof.ok) return { kind: 'noproof', proof, mac, file: r.name };
  }
  if (!picked) return { kind: 'notfound', reason: 'no such file' };
  if ('unknownMac' in picked) return { kind: 'notfound', reason: 'unknown MAC', mac };
  if (picked.match.file.spec.secrets && !proof) {
    proof = prove(mac);
    if (!proof.ok) return { kind: 'noproof', proof, mac, file: r.name };
  }
  return render(deps, picked.match, picked.device, r.name, proof);
}

function render(deps: ProviderDeps, match: Parameters<Renderer['render']>[0], device: Parameters<Renderer['render']>[1], file: string, proof?: Proof): Outcome {
  try {
    const rendered = deps.renderer.render(match, device);
    return { kind: 'rendered', rendered, file, mac: device?.mac, secrets: match.file.spec.secrets, proof };
  } catch (e) {
    deps.log.error('render failed', { file, mac: device?.mac, err: (e as Error).message });
    return { kind: 'error', message: (e as Error).message };
  }
}
