/** Shared run state: readiness and the upgrade gate read it; shutdown sets it. */
export interface Lifecycle {
  readonly startedAt: number;
  draining: boolean;
}

export function createLifecycle(now: () => number = Date.now): Lifecycle {
  return { startedAt: now(), draining: false };
}
