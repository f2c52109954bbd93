import { Observable, type OperatorFunction } from 'rxjs';

/**
 * Which inputs share one engine call. `chunkOf(input, index)` names the input's chunk and the
 * chunk's size (index: the input's position in the stage's input order); a chunk goes to the engine
 * once all its members arrived (or the input ends). Never timing: the batch composition changes
 * float rounding, so it must depend only on the record order.
 */
export interface GroupingRule<In> {
  chunkOf: (input: In, index: number) => { key: string; size: number };
}

/** One input (a prompt's K samples, or one group) per engine call. */
export function onePerCall<In>(keyOf: (input: In) => string): GroupingRule<In> {
  return { chunkOf: (input) => ({ key: keyOf(input), size: 1 }) };
}

/** Consecutive chunks of `size` inputs of the input order (the remainder on completion). */
export function fixedChunks<In>(size: number): GroupingRule<In> {
  return { chunkOf: (_input, index) => ({ key: String(Math.floor(index / size)), size }) };
}

/**
 * Groups inputs into engine calls by a stage's grouping rule: an input joins the chunk its rule
 * names, and a chunk is emitted once it holds the rule's size; what is left when the source
 * completes is emitted then, in first-arrival order. Depends on the record order only, never on
 * timing, so a re-run (or a replay) forms the same batches.
 *
 *   a-b-c-d-e-|   chunkBy(fixedChunks(2))   --[a,b]--[c,d]--[e]|
 */
export function chunkBy<T>(rule: GroupingRule<T>): OperatorFunction<T, T[]> {
  return (source) =>
    new Observable<T[]>((subscriber) => {
      const open = new Map<string, { items: T[]; size: number }>();
      let index = 0;
      return source.subscribe({
        next: (item) => {
          const { key, size } = rule.chunkOf(item, index++);
          const chunk = open.get(key) ?? { items: [], size };
          chunk.items.push(item);
          if (chunk.items.length >= chunk.size) {
            open.delete(key);
            subscriber.next(chunk.items);
          } else open.set(key, chunk);
        },
        error: (err) => subscriber.error(err),
        complete: () => {
          for (const chunk of open.values()) subscriber.next(chunk.items);
          open.clear();
          subscriber.complete();
        },
      });
    });
}
