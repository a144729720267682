/**
 * A small min-cost max-flow solver for the map planner: successive shortest paths (SPFA over the residual
 * graph), each round augmenting along every shortest path at once (a DFS restricted to tight edges), so a
 * round moves many units. Integer capacities and costs; the graph must hold no negative-cost cycle (the
 * planner's graphs are acyclic), so no residual graph does either. Deterministic: edges are explored in a
 * fixed order (last added first).
 */
export class FlowGraph {
  private readonly head: Int32Array;
  private to: Int32Array;
  private next: Int32Array;
  private cap: Float64Array;
  private cost: Float64Array;
  private edges = 0;

  /** `edgeHint`: the number of edges expected (the arrays grow past it). */
  constructor(
    readonly size: number,
    edgeHint = 64,
  ) {
    this.head = new Int32Array(size).fill(-1);
    const room = Math.max(16, 2 * edgeHint);
    this.to = new Int32Array(room);
    this.next = new Int32Array(room);
    this.cap = new Float64Array(room);
    this.cost = new Float64Array(room);
  }

  /** Adds an edge and returns its id (its flow is read with `flow(id)`). */
  addEdge(from: number, to: number, capacity: number, cost: number): number {
    const id = this.edges;
    this.push(from, to, capacity, cost);
    this.push(to, from, 0, -cost);
    return id;
  }

  /** The flow on the edge `id` (its reverse edge's residual capacity). */
  flow(id: number): number {
    return this.cap[id + 1] as number;
  }

  /** Pushes as much flow as possible from `source` to `sink` at the least cost; returns the flow value. */
  run(source: number, sink: number): number {
    const dist = new Float64Array(this.size);
    const inQueue = new Uint8Array(this.size);
    const onPath = new Uint8Array(this.size);
    const arc = new Int32Array(this.size);
    const via = new Int32Array(this.size);
    const queue = new Int32Array(this.size + 1);
    let total = 0;
    for (;;) {
      dist.fill(Number.POSITIVE_INFINITY);
      dist[source] = 0;
      // SPFA with a circular queue (a vertex is in it at most once).
      let qHead = 0;
      let qTail = 0;
      queue[qTail++] = source;
      inQueue[source] = 1;
      while (qHead !== qTail) {
        const u = queue[qHead] as number;
        qHead = qHead === this.size ? 0 : qHead + 1;
        inQueue[u] = 0;
        const du = dist[u] as number;
        for (let e = this.head[u] as number; e !== -1; e = this.next[e] as number) {
          if ((this.cap[e] as number) <= 0) continue;
          const v = this.to[e] as number;
          const nd = du + (this.cost[e] as number);
          if (nd < (dist[v] as number)) {
            dist[v] = nd;
            via[v] = e;
            if (!inQueue[v]) {
              inQueue[v] = 1;
              queue[qTail] = v;
              qTail = qTail === this.size ? 0 : qTail + 1;
            }
          }
        }
      }
      if (dist[sink] === Number.POSITIVE_INFINITY) return total;
      arc.set(this.head);
      let pushed = 0;
      for (;;) {
        const f = this.augment(source, sink, Number.POSITIVE_INFINITY, dist, arc, onPath);
        if (f === 0) break;
        pushed += f;
      }
      // The DFS skips nodes on its own path, so zero-cost cycles can hide every path from it; the
      // shortest path SPFA found is then pushed alone.
      if (pushed === 0) pushed = this.pushAlong(source, sink, via);
      total += pushed;
    }
  }

  private pushAlong(source: number, sink: number, via: Int32Array): number {
    let f = Number.POSITIVE_INFINITY;
    for (let v = sink; v !== source; v = this.to[(via[v] as number) ^ 1] as number) {
      f = Math.min(f, this.cap[via[v] as number] as number);
    }
    for (let v = sink; v !== source; v = this.to[(via[v] as number) ^ 1] as number) {
      const e = via[v] as number;
      this.cap[e] = (this.cap[e] as number) - f;
      this.cap[e ^ 1] = (this.cap[e ^ 1] as number) + f;
    }
    return f;
  }

  private augment(
    u: number,
    sink: number,
    limit: number,
    dist: Float64Array,
    arc: Int32Array,
    onPath: Uint8Array,
  ): number {
    if (u === sink) return limit;
    onPath[u] = 1;
    let sent = 0;
    for (let e = arc[u] as number; e !== -1; e = this.next[e] as number) {
      arc[u] = e;
      const v = this.to[e] as number;
      const c = this.cap[e] as number;
      if (c <= 0 || onPath[v] || dist[v] !== (dist[u] as number) + (this.cost[e] as number)) continue;
      const f = this.augment(v, sink, Math.min(limit - sent, c), dist, arc, onPath);
      if (f > 0) {
        this.cap[e] = c - f;
        this.cap[e ^ 1] = (this.cap[e ^ 1] as number) + f;
        sent += f;
        if (sent === limit) break;
      }
    }
    onPath[u] = 0;
    return sent;
  }

  private push(from: number, to: number, capacity: number, cost: number): void {
    if (this.edges === this.to.length) {
      const grow = <T extends Int32Array | Float64Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.to = grow(this.to);
      this.next = grow(this.next);
      this.cap = grow(this.cap);
      this.cost = grow(this.cost);
    }
    const e = this.edges++;
    this.to[e] = to;
    this.cap[e] = capacity;
    this.cost[e] = cost;
    this.next[e] = this.head[from] as number;
    this.head[from] = e;
  }
}
