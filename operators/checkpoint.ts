import { concatMap, distinctUntilChanged, Observable, type OperatorFunction } from 'rxjs';

export interface ActiveEngine<E> {
  version: number;
  engine: E;
}

/**
 * checkpoints → engines: each new model version (a checkpoint v_t for the sampler; its reference
 * v_{t−1} for the scorer) opens an engine on it and then closes the one it replaces, so a stage
 * always works on the latest policy and never holds two. The last engine is closed when the stream
 * ends or is unsubscribed.
 *
 *   versions:  0--0--1-----2--|
 *   engines:   e0----e1----e2-|      (e0 closed when e1 is open, e2 closed at the end)
 */
export function switchEngines<E extends { close(): Promise<void> }>(open: (version: number) => Promise<E>): OperatorFunction<number, ActiveEngine<E>> {
  return (versions$) =>
    new Observable<ActiveEngine<E>>((subscriber) => {
      let current: ActiveEngine<E> | null = null;
      const closeCurrent = () => {
        const last = current;
        current = null;
        return last ? last.engine.close() : Promise.resolve();
      };
      const subscription = versions$
        .pipe(
          distinctUntilChanged(),
          concatMap(async (version) => {
            const engine = await open(version);
            await closeCurrent();
            current = { version, engine };
            return current;
          }),
        )
        .subscribe({
          next: (active) => subscriber.next(active),
          error: (err) => void closeCurrent().finally(() => subscriber.error(err)),
          complete: () => void closeCurrent().finally(() => subscriber.complete()),
        });
      return () => {
        subscription.unsubscribe();
        void closeCurrent();
      };
    });
}
