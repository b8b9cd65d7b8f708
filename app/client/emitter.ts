/** A minimal typed event emitter: no dependency, the same in browsers and Bun. */
export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  private readonly listeners = new Map<keyof Events, Set<(value: never) => void>>();

  /** Adds a listener; returns the function that removes it. */
  on<K extends keyof Events>(type: K, listener: (value: Events[K]) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener as (value: never) => void);
    return () => this.off(type, listener);
  }

  /** Like `on`, for the next event of that type only. */
  once<K extends keyof Events>(type: K, listener: (value: Events[K]) => void): () => void {
    const off = this.on(type, (value) => {
      off();
      listener(value);
    });
    return off;
  }

  off<K extends keyof Events>(type: K, listener: (value: Events[K]) => void): void {
    this.listeners.get(type)?.delete(listener as (value: never) => void);
  }

  /** Calls every listener; one that throws does not keep the others from running. */
  protected emit<K extends keyof Events>(type: K, value: Events[K]): void {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (value: Events[K]) => void)(value);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
