/** TFTP request → the provisioning decision → TFTP answer (codes from the one table in src/errors.ts). */
import { Refusals } from '../errors.js';
import type { Logger } from '../log.js';
import type { Guard } from '../provisioning/guard.js';
import type { FetchLog } from '../inventory/fetches.js';
import { normalizeIp } from '../net/address.js';
import { provide, refresh, type ProviderDeps } from '../provisioning/provider.js';
import type { TftpRequest, TftpSource } from './tftp.js';

export function tftpResolver(deps: ProviderDeps & { guard: Guard; log: Logger; fetches?: Pick<FetchLog, 'record'> }) {
  return (req: TftpRequest): TftpSource => {
    const ip = normalizeIp(req.remote.address);
    refresh(deps);
    const out = provide(deps, req.file, { proto: 'tftp', ip }, (mac) => deps.guard.tftp(ip, mac));
    const log = deps.log;
    if (out.named && deps.fetches) {
      const answer = out.kind === 'rendered' || out.kind === 'firmware' ? 'ok' : out.kind === 'banned' ? 'silent' : `error ${Refusals[out.kind].tftp}`;
      deps.fetches.record({ at: Date.now(), ip, proto: 'tftp', file: req.file, answer, proof: out.kind === 'rendered' && out.proof?.ok ? out.proof.by : undefined, mac: out.named.mac, model: out.named.model });
    }
    switch (out.kind) {
      case 'banned':
        // a banned address gets no answer at all
        return { kind: 'silent' };
      case 'refused':
        log.info('tftp refused', { req: req.reqId, ip, file: req.file.slice(0, 200), reason: out.reason });
        return { kind: 'error', code: Refusals.refused.tftp, message: `refused: ${out.reason}` };
      case 'notfound':
        if (log.enabled('debug')) log.debug('tftp not found', { req: req.reqId, ip, file: req.file.slice(0, 200), mac: out.mac, reason: out.reason });
        return { kind: 'error', code: Refusals.notfound.tftp, message: 'file not found' };
      case 'noproof':
        log.security('secret-refused', { proto: 'tftp', ip, mac: out.mac, file: out.file, reason: out.proof.reason, req: req.reqId });
        return { kind: 'error', code: Refusals.noproof.tftp, message: `access violation: ${Refusals.noproof.message}` };
      case 'error':
        return { kind: 'error', code: Refusals.error.tftp, message: Refusals.error.message };
      case 'firmware':
        return { kind: 'file', path: out.path };
      case 'rendered':
        if (out.secrets) log.security('secret-served', { proto: 'tftp', ip, mac: out.mac, file: out.file, proof: out.proof?.ok ? out.proof.by : undefined, req: req.reqId });
        return { kind: 'buffer', data: out.rendered.body };
    }
  };
}
