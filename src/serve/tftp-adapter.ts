/** TFTP request → provider outcome → TFTP answer (error codes per RFC 1350). */
import type { Logger } from '../log.js';
import type { Guard } from './guard.js';
import { normalizeIp } from './guard.js';
import { provide, refresh, type ProviderDeps } from './provider.js';
import type { TftpRequest, TftpSource } from './tftp.js';

export function tftpResolver(deps: ProviderDeps & { guard: Guard; log: Logger }) {
  return (req: TftpRequest): TftpSource => {
    const ip = normalizeIp(req.remote.address);
    refresh(deps);
    // a banned address gets no answer at all
    if (deps.guard.banned(ip)) return { kind: 'silent' };
    const out = provide(deps, req.file, { proto: 'tftp', ip }, (mac) => deps.guard.tftp(ip, mac));
    const log = deps.log;
    switch (out.kind) {
      case 'refused':
        log.info('tftp refused', { req: req.reqId, ip, file: req.file.slice(0, 200), reason: out.reason });
        return { kind: 'error', code: 2, message: `refused: ${out.reason}` };
      case 'notfound':
        if (log.enabled('debug')) log.debug('tftp not found', { req: req.reqId, ip, file: req.file.slice(0, 200), mac: out.mac, reason: out.reason });
        return { kind: 'error', code: 1, message: 'file not found' };
      case 'noproof':
        log.security('secret-refused', { proto: 'tftp', ip, mac: out.mac, file: out.file, reason: out.proof.reason, req: req.reqId });
        return { kind: 'error', code: 2, message: 'access violation: this file holds secrets and no proof was given' };
      case 'error':
        return { kind: 'error', code: 0, message: 'the file could not be rendered; see the apsd log' };
      case 'firmware':
        return { kind: 'file', path: out.path };
      case 'rendered':
        if (out.secrets) log.security('secret-served', { proto: 'tftp', ip, mac: out.mac, file: out.file, proof: out.proof?.ok ? out.proof.by : undefined, req: req.reqId });
        return { kind: 'buffer', data: out.rendered.body };
    }
  };
}
