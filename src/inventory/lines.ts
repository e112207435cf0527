/**
 * Line assignment: an extension is given to one line of one device of its tenant. The check
 * "the extension is free" and the write happen in one write transaction, so two apsctl at once
 * cannot give one extension twice.
 */
import { ApsError } from '../errors.js';
import { macColon, type Mac } from '../mac.js';
import type { LineRow, Store } from '../store/index.js';

export type NewLine = Omit<LineRow, 'srtp'> & { srtp: boolean };

/** Writes the line unless another line of the tenant holds the extension (APS_ERR_EXISTS, nothing written). Call inside or outside a transaction. */
export function assignLine(store: Store, tenant: string, l: NewLine): void {
  store.transaction(() => {
    const holder = store.lineWithExtension(tenant, l.extension);
    if (holder && !(holder.mac === l.mac && holder.idx === l.idx)) {
      throw new ApsError('APS_ERR_EXISTS', `extension ${l.extension} is already line ${holder.idx} of ${macColon(holder.mac as Mac)}`, { expected: 'a free extension (apsctl extension list)' });
    }
    store.setLine(l);
  });
}
