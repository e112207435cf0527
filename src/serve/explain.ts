/**
 * apsctl explain <ip> <file>: what apsd decides for that request and why — ban state, which
 * vendor file and device the name is, which proof is needed and which is present, and the
 * answer over HTTP and TFTP. The answer to "why does my phone get 401/403/404".
 */
import type { Config } from '../config/index.js';
import { macColon, type Mac } from '../mac.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import { pickMatch, resolveName } from './resolve.js';

export interface Explanation {
  ip: string;
  file: string;
  steps: { step: string; says: string }[];
  http: string;
  tftp: string;
}

export function explain(opts: { ip: string; file: string; userAgent?: string; config: Config; store: Store; registry: VendorRegistry; now?: number }): Explanation {
  const { ip, file, config, store, registry } = opts;
  const now = opts.now ?? Date.now();
  const sec = config.settings.security;
  const steps: Explanation['steps'] = [];
  const say = (step: string, says: string) => steps.push({ step, says });
  const done = (http: string, tftp: string): Explanation => ({ ip, file, steps, http, tftp });

  const exempt = sec.trustedSubnets.has(ip) || sec.allow.has(ip);
  const ban = store.activeBans(now).find((b) => b.ip === ip);
  if (ban && !exempt) {
    say('ban', `${ip} is banned until ${new Date(ban.until).toISOString()} (${ban.reason}, ${ban.count} offences); lift with: apsctl ban lift ${ip}`);
    return done('403 with no body (banned)', 'no answer at all (banned)');
  }
  say('ban', ban ? `${ip} has a ban, but is in trusted_subnets/allow, which are never banned` : `${ip} is not banned${exempt ? ' (trusted_subnets/allow: never banned)' : ''}`);

  const r = resolveName(file, registry, config.settings.server.firmwareDir);
  if (r.kind === 'refused') {
    say('name', `refused: ${r.reason}`);
    return done('403 (refused path)', 'error 2 (refused path)');
  }
  if (r.kind === 'notfound') {
    say('name', `"${file}" is no vendor file name and no file in firmware_dir (${config.settings.server.firmwareDir})`);
    return done('404', 'error 1 (file not found)');
  }
  if (r.kind === 'firmware') {
    say('name', `a file in firmware_dir: ${r.path} (${r.size} bytes), served as it is`);
    return done('200', 'the file');
  }
  const names = r.matches.map((m) => `${m.file.vendor.name} ${m.file.spec.name}${m.file.spec.secrets ? ' (holds secrets)' : ''}`);
  say('name', `"${r.name}" is ${names.join(' or ')}`);
  const common = r.matches.find((m) => m.file.scope !== 'device');
  if (common) {
    say('device', `a file common to ${common.model ? `every ${common.file.vendor.name} ${common.model.id}` : `every ${common.file.vendor.name} phone`}: no device, no secrets, no proof needed`);
    return done('200', '200 equivalent: the file');
  }
  const mac = r.matches[0].mac as Mac;
  const picked = pickMatch(r.matches, store);
  const secretsLikely = r.matches.some((m) => m.file.spec.secrets);
  if (!picked || 'unknownMac' in picked) {
    say('device', `${macColon(mac)} is not a device (apsctl device list); the request counts as an unknown-MAC miss against ${ip}${exempt ? ' (but trusted addresses are never banned)' : ''}`);
    if (secretsLikely) {
      say('proof', 'a name that may hold secrets is refused for want of proof before the device is looked up, so that probing learns nothing');
      return done('401 without credentials, 404 with valid ones', sec.tftpSecrets === 'always' ? 'error 1 (file not found)' : 'error 2 without a lease, error 1 with one');
    }
    return done('404', 'error 1 (file not found)');
  }
  const d = picked.device!;
  const spec = picked.match.file.spec;
  const v = registry.get(d.vendor);
  const tpl = d.template ? config.templates.get(d.template) : undefined;
  say('device', `${macColon(mac)}: ${v?.name ?? d.vendor} ${d.model}, tenant ${d.tenant}, template ${d.template ?? '(none: built-in defaults)'}${d.template && !tpl ? ' — which no longer exists: built-in defaults are served' : ''}, state ${d.state}`);
  if (!spec.secrets) {
    say('proof', `${spec.name} holds no secrets: no proof needed`);
    return done('200', 'the file');
  }
  const lease = store.lease(mac);
  const leaseOk = !!lease && lease.ip === ip && lease.expires_at > now && sec.trustedSubnets.has(ip);
  const leaseSays = !lease
    ? 'no DHCP lease is known for this MAC'
    : lease.ip !== ip
      ? `the lease of this MAC is held by ${lease.ip}, not ${ip}`
      : lease.expires_at <= now
        ? `the lease expired at ${new Date(lease.expires_at).toISOString()}`
        : !sec.trustedSubnets.has(ip)
          ? `${ip} holds the lease but is outside trusted_subnets (${sec.trustedSubnets.text || 'empty'})`
          : `${ip} holds the lease until ${new Date(lease.expires_at).toISOString()}: that is proof`;
  say('lease', leaseSays);
  const creds = store.credentials(mac);
  const credSays = sec.auth === 'none'
    ? 'HTTP credentials are off ([security] auth = none)'
    : `HTTP ${sec.auth === 'basic' ? 'digest (or Basic over HTTPS)' : 'digest'} with ${sec.username ? `the site user "${sec.username}" or ` : ''}the device's own user "${creds?.username ?? '?'}" (apsctl device credentials ${mac})`;
  say('credentials', credSays);
  if (config.settings.https.clientCa) say('certificate', 'over HTTPS, a client certificate from client_ca naming this MAC is proof too');
  const http = leaseOk ? '200 (lease)' : sec.auth === 'none' ? '403 (no proof: no credentials accepted, no lease)' : '401 without credentials, 200 with valid ones';
  const tftp = sec.tftpSecrets === 'always' ? 'the file (tftp_secrets = always)' : sec.tftpSecrets === 'never' ? 'error 2 (tftp_secrets = never)' : leaseOk ? 'the file (lease)' : 'error 2 (no lease proof)';
  return done(http, tftp);
}
