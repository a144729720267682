/** What the handlers of one connection share about it: who it is and what it negotiated. */
export interface Session {
  /** The authenticated user; undefined before SASL succeeds. */
  user: string | undefined;
  /** HELLO negotiated MutationSeqno: write replies carry the vBucket uuid and seqno. */
  mutationSeqno: boolean;
  readonly peer: string;
  /** TLS: PLAIN is allowed only here. */
  readonly secure: boolean;
}
