/**
 * `apsctl status`: what the running apsd serves, and each of its services — on which
 * interface, running or waiting since when, the last error — from the status file apsd keeps
 * in its state_dir (src/servers/status-file.ts). Exit 0 when apsd runs, 1 when it does not.
 */
import { readStatus, statusPath } from '../../servers/status-file.js';
import { ApsError } from '../../errors.js';
import { table } from '../table.js';
import { alive, out, type CliCommand } from '../context.js';

export const commands: CliCommand[] = [
  {
    name: 'status',
    usage: 'status                    what apsd serves; each service, its interface, state since when, last error',
    run(ctx) {
      const dir = ctx.config.settings.server.stateDir;
      const st = readStatus(dir);
      if (!st) throw new ApsError('APS_ERR_NOT_FOUND', `apsd is not running: no status file ${statusPath(dir)}`, { expected: 'a running apsd with this configuration (systemctl start apsd)' });
      const running = alive(st.pid);
      if (ctx.json) {
        out(JSON.stringify({ running, ...st }, null, 2) + '\n');
        return running ? 0 : 1;
      }
      if (!running) {
        process.stderr.write(`apsctl: apsd is not running (pid ${st.pid} is gone); its last status, of ${st.updated}:\n`);
      }
      out(`apsd pid ${st.pid}, up since ${st.started}, config ${st.config}\n`);
      out(`http:  ${st.listen.http.join(', ') || 'off'}\nhttps: ${st.listen.https.join(', ') || 'off'}\ntftp:  ${st.listen.tftp.join(', ') || 'off'}\n`);
      if (st.services.length) {
        out(table(['SERVICE', 'INTERFACE', 'STATE', 'SINCE', 'LAST ERROR'], st.services.map((s) => [s.service, s.interface ?? '-', s.state, s.since, s.lastError || '-'])));
      }
      return running ? 0 : 1;
    },
  },
];
