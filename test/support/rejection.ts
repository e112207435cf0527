import * as assert from 'uvu/assert';
import { ApsError } from '../../src/errors.js';

/** The ApsError a promise rejects with; fails the test when it resolves or rejects with something else. */
export async function rejection(p: Promise<unknown>): Promise<ApsError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, ApsError);
    return e as ApsError;
  }
  throw new assert.Assertion({ message: 'expected a rejection', operator: 'rejects', expects: 'ApsError', actual: 'resolved' });
}
