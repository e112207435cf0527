/**
 * Lines and the stage they put a phone in. An extension is given to one line of one device of
 * its tenant: the check "the extension is free" and the write happen in one write transaction,
 * so two apsctl at once cannot give one extension twice. A phone without any line is in the
 * unprovisioned stage (its own unprov account, UNPROV on the display); assigning a line
 * provisions it; removing its last line returns it to the unprovisioned stage. A disabled
 * phone stays disabled whatever its lines (it gets nothing of value).
 */
import { ApsError } from '../errors.js';
import { macColon, type Mac } from '../mac.js';
import type { DeviceRow, DeviceState, LineRow, Store } from '../store/index.js';

export type NewLine = Omit<LineRow, 'srtp'> & { srtp: boolean };

/** The state a device with `lines` lines should be in. */
export function stageOf(current: DeviceState, lines: number): DeviceState {
  if (current === 'disabled') return 'disabled';
  return lines > 0 ? 'provisioned' : 'unprovisioned';
}

function settle(store: Store, mac: Mac): void {
  const d = store.device(mac);
  if (!d) return;
  const want = stageOf(d.state, store.lines(mac).length);
  if (want !== d.state) store.updateDevice(mac, { state: want });
}

/** Writes the line unless another line of the tenant holds the extension (APS_ERR_EXISTS, nothing written); the phone is provisioned. */
export function assignLine(store: Store, tenant: string, l: NewLine): void {
  store.transaction(() => {
    const holder = store.lineWithExtension(tenant, l.extension);
    if (holder && !(holder.mac === l.mac && holder.idx === l.idx)) {
      throw new ApsError('APS_ERR_EXISTS', `extension ${l.extension} is already line ${holder.idx} of ${macColon(holder.mac as Mac)}`, { expected: 'a free extension (apsctl extension list)' });
    }
    store.setLine(l);
    settle(store, l.mac);
  });
}

/** Removes a line; false when it was not assigned. The last line gone, the phone is unprovisioned again. */
export function unassignLine(store: Store, mac: Mac, idx: number): boolean {
  return store.transaction(() => {
    const gone = store.removeLine(mac, idx);
    if (gone) settle(store, mac);
    return gone;
  });
}

/** Disables (nothing of value is served) or enables a phone; enabled, it takes the stage its lines give it. */
export function setDisabled(store: Store, mac: Mac, disabled: boolean): DeviceRow {
  return store.transaction(() => {
    const d = store.device(mac);
    if (!d) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${macColon(mac)}`, { expected: 'a MAC from apsctl device list' });
    const want = disabled ? 'disabled' : stageOf('provisioned', store.lines(mac).length);
    return want === d.state ? d : store.updateDevice(mac, { state: want });
  });
}

/** The stage in words, for apsctl device show. */
export function describeStage(d: DeviceRow, lines: number): string {
  if (d.state === 'disabled') return 'disabled: it gets no account, no keys and no secrets until apsctl device enable';
  if (d.state === 'unprovisioned') return lines ? 'unprovisioned' : 'unprovisioned: no line yet, so it registers with its own unprov account and shows UNPROV (assign a line, or let the phone be PIN-registered)';
  return `provisioned: ${lines} line${lines === 1 ? '' : 's'}`;
}
