/**
 * apsd's side of firmware rollouts: a timer that steps every unfinished rollout each
 * [firmware] check_every (src/firmware/rollout.ts tick), and sends the resyncs a step asks for.
 * The state lives in SQLite, so apsctl may start, pause or roll back with or without apsd.
 */
import type { Config } from '../config/index.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { tick } from '../firmware/rollout.js';
import { resync } from '../pin/resync.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import type { Service } from './service.js';

export interface RolloutServiceDeps {
  store: Store;
  registry: VendorRegistry;
  config: () => Config;
  log: Logger;
}

export function createRolloutService(deps: RolloutServiceDeps): Service {
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<unknown> = Promise.resolve();
  let stopped = false;
  const log = deps.log.child({ service: 'firmware' });
  const once = () => {
    try {
      deps.store.pollChanges();
      const sends = tick({ ...deps, log, resync: (mac) => resync({ store: deps.store, registry: deps.registry, config: deps.config, log }, mac) });
      running = Promise.allSettled(sends);
    } catch (e) {
      log.error('firmware rollouts not stepped', { err: describeError(e) });
    }
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      once();
      schedule();
    }, deps.config().settings.firmware.checkEveryMs);
    timer.unref();
  };
  return {
    name: 'firmware',
    async start() {
      stopped = false;
      // a rollout that was under way when apsd stopped (or was killed) goes on where it was
      once();
      schedule();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
    describe() {
      return { rollouts_every: `${deps.config().settings.firmware.checkEveryMs / 1000}s` };
    },
  };
}
