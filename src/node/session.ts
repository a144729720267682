/** What the handlers of one connection share about it: who it is and what it negotiated. */
export interface Session {
  /** The authenticated user; undefined before SASL succeeds. */
  user: string | undefined;
  /** HELLO negotiated MutationSeqno: write replies carry the vBucket uuid and seqno. */
  mutationSeqno: boolean;
  /** HELLO negotiated Xerror: extended status codes (Locked…) are sent as they are, not mapped. */
  xerror: boolean;
  /** HELLO negotiated Json: reads keep the JSON datatype bit (else it is cleared, as kv_engine does). */
  json: boolean;
  /** HELLO negotiated Duplex + ClustermapChangeNotification: 'full' or 'brief' config pushes. */
  clustermap: 'full' | 'brief' | undefined;
  /** SELECT_BUCKET named this node's bucket. */
  bucketSelected: boolean;
  readonly peer: string;
  /** TLS: PLAIN is allowed only here. */
  readonly secure: boolean;
}

export function newSession(peer: string, secure: boolean): Session {
  return {
    user: undefined,
    mutationSeqno: false,
    xerror: false,
    json: false,
    clustermap: undefined,
    bucketSelected: false,
    peer,
    secure,
  };
}
