/** apsctl firmware add|list|remove|status and firmware rollout start|status|pause|resume|abort|rollback. */
import { ApsError } from '../../errors.js';
import { macColon } from '../../mac.js';
import { addImage, removeImage, usersOf } from '../../firmware/catalogue.js';
import { wantedVersion } from '../../firmware/select.js';
import { compareVersions } from '../../render/view.js';
import { abortRollout, allowedFailures, pauseRollout, resumeRollout, rollbackRollout, startRollout, upgradeLimitMs } from '../../firmware/rollout.js';
import { FirmwareStore, type RolloutRow } from '../../store/firmware.js';
import { openStore, out, usage, type CliCommand, type Ctx } from '../context.js';
import { table } from '../table.js';

const iso = (t: number | null) => (t ? new Date(t).toISOString().replace(/\.\d+Z$/, 'Z') : '-');
const list = (s: string | boolean | undefined) => (typeof s === 'string' ? s.split(',').map((x) => x.trim()).filter(Boolean) : []);

function pickRollout(ctx: Ctx, pos: string[]): RolloutRow {
  const fw = new FirmwareStore(openStore(ctx));
  if (pos.length > 1) usage('a rollout command takes at most one rollout ID');
  if (pos[0] !== undefined) {
    if (!/^\d+$/.test(pos[0])) usage(`"${pos[0]}" is not a rollout ID`);
    const r = fw.rollout(Number(pos[0]));
    if (!r) throw new ApsError('APS_ERR_NOT_FOUND', `no rollout ${pos[0]}`, { expected: 'an ID from apsctl firmware rollout status' });
    return r;
  }
  const active = fw.activeRollouts();
  if (active.length > 1) usage(`${active.length} rollouts are unfinished (${active.map((r) => r.id).join(', ')}): name one`);
  const r = active[0] ?? fw.rollouts().at(-1);
  if (!r) throw new ApsError('APS_ERR_NOT_FOUND', 'no rollout yet', { expected: 'apsctl firmware rollout start first' });
  return r;
}

function rolloutStatus(ctx: Ctx, r: RolloutRow) {
  const fw = new FirmwareStore(openStore(ctx));
  const devs = fw.rolloutDevices(r.id);
  const waves = JSON.parse(r.waves) as number[];
  const perWave = waves.map((share, w) => {
    const d = devs.filter((x) => x.wave === w);
    const n = (s: string) => d.filter((x) => x.state === s).length;
    return { wave: w + 1, share, phones: d.length, pending: n('pending'), sent: n('sent'), upgraded: n('upgraded'), failed: n('failed'), rolledback: n('rolledback'), allowedFailures: allowedFailures(d.length, r.max_failed) };
  });
  const j = {
    id: r.id, version: r.version, vendor: r.vendor, models: r.models.split(','), tenant: r.tenant, state: r.state, reason: r.reason || null,
    wave: r.wave + 1, waves: perWave, window: r.window || null, maxFailed: r.max_failed, soakSeconds: r.soak_ms / 1000,
    upgradeLimitSeconds: upgradeLimitMs({ registry: ctx.registry, config: () => ctx.config }, r, r.vendor) / 1000,
    waveStarted: r.wave_started_at ? new Date(r.wave_started_at).toISOString() : null, created: new Date(r.created_at).toISOString(),
    phones: devs.map((d) => ({ mac: d.mac, wave: d.wave + 1, state: d.state, model: d.model, from: d.from_version, reports: d.firmware, started: d.started_at ? new Date(d.started_at).toISOString() : null, done: d.done_at ? new Date(d.done_at).toISOString() : null })),
  };
  if (ctx.json) {
    out(JSON.stringify(j, null, 2) + '\n');
    return;
  }
  out(`rollout ${r.id}: ${r.vendor} ${r.models} to ${r.version}${r.tenant ? `, tenant ${r.tenant}` : ''}: ${r.state}${r.state === 'running' || r.state === 'paused' ? `, wave ${r.wave + 1} of ${waves.length}` : ''}\n`);
  if (r.reason) out(`reason: ${r.reason}\n`);
  out(`window ${r.window || 'any time'}, max failed ${r.max_failed}% per wave, soak ${r.soak_ms / 1000}s, upgrade limit ${j.upgradeLimitSeconds}s\n`);
  out(table(['WAVE', 'SHARE', 'PHONES', 'PENDING', 'SENT', 'UPGRADED', 'FAILED', 'ROLLED BACK', 'MAY FAIL'], perWave.map((w) => [w.wave, `${w.share}%`, w.phones, w.pending, w.sent, w.upgraded, w.failed, w.rolledback, w.allowedFailures])));
  out(table(['MAC', 'WAVE', 'STATE', 'MODEL', 'FROM', 'REPORTS', 'SENT AT', 'DONE AT'], devs.map((d) => [macColon(d.mac), d.wave + 1, d.state, d.model, d.from_version ?? '-', d.firmware ?? '-', iso(d.started_at), iso(d.done_at)])));
}

export const commands: CliCommand[] = [
  {
    name: 'firmware add',
    usage: 'firmware add FILE --vendor V --models M[,M…] --version X\n                          copy an image into firmware_dir and record it in the catalogue',
    options: { models: { type: 'string' }, version: { type: 'string' } },
    async run(ctx, pos, o) {
      if (pos.length !== 1) usage('firmware add takes one FILE');
      if (!o.vendor) usage('firmware add needs --vendor V');
      if (!o.version) usage('firmware add needs --version X');
      const r = await addImage({ store: openStore(ctx), registry: ctx.registry, config: ctx.config }, { file: pos[0]!, vendor: o.vendor as string, models: list(o.models), version: o.version as string });
      if (ctx.json) out(JSON.stringify({ file: r.file, vendor: r.vendor, models: r.models.split(','), version: r.version, size: r.size, sha256: r.sha256, copied: r.copied }, null, 2) + '\n');
      else out(`${r.copied ? 'added' : 'recorded'} ${r.file}: ${r.vendor} ${r.models} version ${r.version}, ${r.size} bytes, sha256 ${r.sha256}\n`);
    },
  },
  {
    name: 'firmware list',
    usage: 'firmware list             the catalogue: each image, the templates that use it, the phones that report its version',
    run(ctx, pos) {
      if (pos.length) usage('firmware list takes no arguments');
      const store = openStore(ctx);
      const fw = new FirmwareStore(store);
      const counts = fw.versionCounts();
      const rows = fw.images().map((i) => {
        const models = new Set(i.models.split(',').map((m) => m.toLowerCase()));
        const phones = counts.filter((c) => c.vendor === i.vendor && c.firmware === i.version && models.has(c.model.toLowerCase())).reduce((a, c) => a + c.n, 0);
        const u = usersOf({ store, registry: ctx.registry, config: ctx.config }, i);
        return { ...i, phones, templates: u.templates, rollouts: u.rollouts };
      });
      if (ctx.json) {
        out(JSON.stringify(rows.map((r) => ({ file: r.file, vendor: r.vendor, models: r.models.split(','), version: r.version, size: r.size, sha256: r.sha256, added: new Date(r.added_at).toISOString(), templates: r.templates, rollouts: r.rollouts, phones: r.phones })), null, 2) + '\n');
        return;
      }
      if (!rows.length) {
        out('no firmware in the catalogue (apsctl firmware add FILE --vendor V --models M --version X)\n');
        return;
      }
      out(table(['FILE', 'VENDOR', 'MODELS', 'VERSION', 'SIZE', 'SHA256', 'TEMPLATES', 'PHONES'], rows.map((r) => [r.file, r.vendor, r.models, r.version, r.size, r.sha256.slice(0, 16), r.templates.join(',') || '-', r.phones])));
    },
  },
  {
    name: 'firmware remove',
    usage: 'firmware remove FILE      drop an image (refused while a template, rollout or phone uses it)',
    run(ctx, pos) {
      if (pos.length !== 1) usage('firmware remove takes one FILE');
      const img = removeImage({ store: openStore(ctx), registry: ctx.registry, config: ctx.config }, pos[0]!);
      if (ctx.json) out(JSON.stringify({ removed: img.file }, null, 2) + '\n');
      else out(`removed ${img.file} (version ${img.version})\n`);
    },
  },
  {
    name: 'firmware status',
    usage: 'firmware status [--vendor V] [--model M]\n                          phones per reported version, and the phones not at their template\'s version',
    run(ctx, pos, o) {
      if (pos.length) usage('firmware status takes no positional arguments');
      const store = openStore(ctx);
      const fw = new FirmwareStore(store);
      const images = fw.images();
      const vendor = o.vendor as string | undefined;
      const model = (o.model as string | undefined)?.toLowerCase();
      const counts = fw.versionCounts().filter((c) => (!vendor || c.vendor === vendor) && (!model || c.model.toLowerCase() === model));
      const devices = store.devices({ vendor }).filter((d) => !model || d.model.toLowerCase() === model);
      const off = devices.flatMap((d) => {
        const template = d.template ? ctx.config.templates.get(d.template) : undefined;
        const want = wantedVersion(images, { vendor: d.vendor, model: d.model, template });
        if (!want || d.firmware === want) return [];
        const state = d.firmware === null ? 'unknown' : compareVersions(d.firmware, want) < 0 ? 'behind' : 'ahead';
        return [{ mac: d.mac, vendor: d.vendor, model: d.model, template: d.template, reports: d.firmware, wants: want, state, seen: d.seen_at }];
      });
      if (ctx.json) {
        out(JSON.stringify({ versions: counts.map((c) => ({ vendor: c.vendor, model: c.model, version: c.firmware, phones: c.n })), notAtTemplateVersion: off.map((x) => ({ ...x, seen: x.seen ? new Date(x.seen).toISOString() : null })) }, null, 2) + '\n');
        return;
      }
      out(table(['VENDOR', 'MODEL', 'VERSION', 'PHONES'], counts.map((c) => [c.vendor, c.model, c.firmware ?? '(not reported)', c.n])));
      if (!off.length) out('every phone with a template firmware version reports it\n');
      else {
        out(`${off.filter((x) => x.state === 'behind').length} behind, ${off.filter((x) => x.state === 'ahead').length} ahead, ${off.filter((x) => x.state === 'unknown').length} not reporting their template's version:\n`);
        out(table(['MAC', 'VENDOR', 'MODEL', 'TEMPLATE', 'REPORTS', 'TEMPLATE WANTS', 'STATE', 'LAST SEEN'], off.map((x) => [macColon(x.mac), x.vendor, x.model, x.template ?? '-', x.reports ?? '-', x.wants, x.state, iso(x.seen)])));
      }
    },
  },
  {
    name: 'firmware rollout',
    usage: `firmware rollout start <version> --models M[,M…] [--vendor V] [--tenant T] --waves 5%,25%,100%
                   [--window 01:00-05:00] [--max-failed 2%] [--soak 30m] [--upgrade-limit 20m]
                          upgrade in waves that apsd moves on and that halt by themselves
firmware rollout status [ID]
                          each wave and each phone
firmware rollout pause|resume|abort|rollback [ID]`,
    options: { waves: { type: 'string' }, window: { type: 'string' }, 'max-failed': { type: 'string' }, soak: { type: 'string' }, 'upgrade-limit': { type: 'string' } },
    run(ctx, pos, o) {
      const [sub, ...rest] = pos;
      const store = openStore(ctx);
      switch (sub) {
        case 'start': {
          if (rest.length !== 1) usage('firmware rollout start takes one <version>');
          if (!o.waves) usage('firmware rollout start needs --waves, e.g. 5%,25%,100%');
          const r = startRollout({ store, registry: ctx.registry, config: () => ctx.config }, {
            version: rest[0]!, vendor: o.vendor as string | undefined, models: list(o.models), tenant: o.tenant as string | undefined,
            waves: o.waves as string, window: (o.window as string | undefined) ?? '', maxFailed: (o['max-failed'] as string | undefined) ?? '0%',
            soak: (o.soak as string | undefined) ?? '30m', upgradeLimit: o['upgrade-limit'] as string | undefined,
          });
          if (ctx.json) out(JSON.stringify(r, null, 2) + '\n');
          else out(`rollout ${r.id} started: ${r.phones} phones in ${r.waves.length} waves (${r.waves.join(', ')}); apsd moves it on\n`);
          return;
        }
        case 'status':
          rolloutStatus(ctx, pickRollout(ctx, rest));
          return;
        case 'pause':
        case 'resume':
        case 'abort':
        case 'rollback': {
          const r = pickRollout(ctx, rest);
          const after = sub === 'pause' ? pauseRollout(store, r.id) : sub === 'resume' ? resumeRollout(store, r.id) : sub === 'abort' ? abortRollout(store, r.id) : rollbackRollout({ store, config: () => ctx.config }, r.id).rollout;
          if (ctx.json) out(JSON.stringify({ id: after.id, state: after.state }, null, 2) + '\n');
          else out(`rollout ${after.id}: ${after.state}${sub === 'rollback' ? ' (apsd tells the phones to fetch the image they ran before)' : ''}\n`);
          return;
        }
        default:
          usage('firmware rollout start|status|pause|resume|abort|rollback');
      }
    },
  },
];
