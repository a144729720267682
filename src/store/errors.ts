import { DcpxError } from '../protocol/index.js';

export type StoreErrorCode =
  | 'DCPX_ERR_STORE_SEQNO'
  | 'DCPX_ERR_STORE_BAD_ITEM'
  | 'DCPX_ERR_STORE_NO_VBUCKET'
  | 'DCPX_ERR_STORE_CORRUPT'
  | 'DCPX_ERR_STORE_WRITE'
  | 'DCPX_ERR_STORE_CLOSED'
  /** commit/abort of a seqno that is not a prepare in flight, or a replicated commit with no prepare */
  | 'DCPX_ERR_STORE_NO_PREPARE';

export class StoreError extends DcpxError {
  declare readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
