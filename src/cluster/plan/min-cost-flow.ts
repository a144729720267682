/**
 * A small min-cost max-flow solver for the map planner: successive shortest paths (SPFA over the residual
 * graph), each round augmenting along every shortest path at once (a DFS restricted to tight edges), so a
 * round moves many units. Integer capacities and costs >= 0 (so the residual graph never holds a negative cycle);
 * deterministic: edges are explored in a fixed order (last added first).
 */
export class FlowGraph {
  private readonly head: number[];
  private readonly to: number[] = [];
  private readonly next: number[] = [];
  private readonly cap: number[] = [];
  private readonly cost: number[] = [];

  constructor(readonly size: number) {
    this.head = new Array<number>(size).fill(-1);
  }

  /** Adds an edge and returns its id (its flow is read with `flow(id)`). */
  addEdge(from: number, to: number, capacity: number, cost: number): number {
    const id = this.to.length;
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
    const dist = new Array<number>(this.size);
    const inQueue = new Uint8Array(this.size);
    const onPath = new Uint8Array(this.size);
    const arc = new Array<number>(this.size);
    let total = 0;
    for (;;) {
      dist.fill(Number.POSITIVE_INFINITY);
      dist[source] = 0;
      const queue: number[] = [source];
      inQueue[source] = 1;
      for (let qi = 0; qi < queue.length; qi++) {
        const u = queue[qi] as number;
        inQueue[u] = 0;
        const du = dist[u] as number;
        for (let e = this.head[u] as number; e !== -1; e = this.next[e] as number) {
          if ((this.cap[e] as number) <= 0) continue;
          const v = this.to[e] as number;
          const nd = du + (this.cost[e] as number);
          if (nd < (dist[v] as number)) {
            dist[v] = nd;
            if (!inQueue[v]) {
              inQueue[v] = 1;
              queue.push(v);
            }
          }
        }
        // Keep the queue array from growing without bound on long SPFA runs.
        if (qi > 65_536 && qi * 2 > queue.length) {
          queue.splice(0, qi + 1);
          qi = -1;
        }
      }
      if (dist[sink] === Number.POSITIVE_INFINITY) return total;
      for (let i = 0; i < this.size; i++) arc[i] = this.head[i] as number;
      let pushed = 0;
      for (;;) {
        const f = this.augment(source, sink, Number.POSITIVE_INFINITY, dist, arc, onPath);
        if (f === 0) break;
        pushed += f;
      }
      if (pushed === 0) return total;
      total += pushed;
    }
  }

  private augment(
    u: number,
    sink: number,
    limit: number,
    dist: number[],
    arc: number[],
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
    this.to.push(to);
    this.cap.push(capacity);
    this.cost.push(cost);
    this.next.push(this.head[from] as number);
    this.head[from] = this.to.length - 1;
  }
}
