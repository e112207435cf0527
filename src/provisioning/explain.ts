/**
 * apsctl explain <ip> <file>: the decision apsd takes for that request, from the same function
 * the servers call (provide, in dry-run: no offence is counted), with the reasons it used, and
 * the answer over HTTP (without credentials) and TFTP. The answer to "why does my phone get
 * 401/403/404".
 */
import { Refusals } from '../errors.js';
import { provide, type Outcome, type ProviderDeps, type TraceStep } from './provider.js';

export interface Explanation {
  ip: string;
  file: string;
  steps: TraceStep[];
  http: string;
  tftp: string;
}

function httpAnswer(o: Outcome): string {
  switch (o.kind) {
    case 'banned': return `${Refusals.refused.http} with no body (banned)`;
    case 'refused': return `${Refusals.refused.http} (refused path)`;
    case 'notfound': return `${Refusals.notfound.http}`;
    case 'noproof': return o.proof.challenge ? `${Refusals.challenge.http} without credentials, 200 with valid ones` : `${Refusals.noproof.http} (no proof: no credentials accepted, no lease)`;
    case 'error': return `${Refusals.error.http} (${o.message})`;
    case 'firmware': return '200 (the file as it is)';
    case 'rendered': return `200${o.proof?.ok ? ` (${o.proof.by})` : ''}`;
  }
}

function tftpAnswer(o: Outcome): string {
  switch (o.kind) {
    case 'banned': return 'no answer at all (banned)';
    case 'refused': return `error ${Refusals.refused.tftp} (refused path)`;
    case 'notfound': return `error ${Refusals.notfound.tftp} (file not found)`;
    case 'noproof': return `error ${Refusals.noproof.tftp} (${o.proof.reason})`;
    case 'error': return `error ${Refusals.error.tftp} (${o.message})`;
    case 'firmware': return 'the file';
    case 'rendered': return `the file${o.proof?.ok ? ` (${o.proof.by})` : ''}`;
  }
}

export function explain(deps: ProviderDeps, opts: { ip: string; file: string; userAgent?: string }): Explanation {
  const { ip, file } = opts;
  const http = provide(deps, file, { proto: 'http', ip, userAgent: opts.userAgent, dryRun: true }, (mac) =>
    deps.guard.http({ proto: 'http', method: 'GET', url: `/${file}`, ip }, mac));
  const tftp = provide(deps, file, { proto: 'tftp', ip, dryRun: true }, (mac) => deps.guard.tftp(ip, mac));
  const steps = [...http.trace];
  // what TFTP adds: its own proof rule
  for (const s of tftp.trace) if ((s.step === 'proof' || s.step === 'lease') && !steps.some((x) => x.says === s.says)) steps.push({ step: s.step, says: `over TFTP: ${s.says}` });
  return { ip, file, steps, http: httpAnswer(http), tftp: tftpAnswer(tftp) };
}
