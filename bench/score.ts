/** What bench/server.ts answers for an id; deterministic so checkers and expressions can recompute it. */
export function scoreOf(id: number): number {
  return (id * 7919) % 1000;
}
