import { bufferTime, filter, type OperatorFunction, type SchedulerLike, asyncScheduler } from 'rxjs';

/**
 * Groups items into arrays of at most `size`, emitting a partial array after `maxWaitMs` so a slow
 * trickle of records (an always-on service) is not held back, and the remainder on completion.
 *
 *   a-b-c-d-e-|   batchUpTo(2, 10ms)   --[a,b]--[c,d]--[e]|
 */
export function batchUpTo<T>(size: number, maxWaitMs = 50, scheduler: SchedulerLike = asyncScheduler): OperatorFunction<T, T[]> {
  return (source) =>
    source.pipe(
      bufferTime(maxWaitMs, null, size, scheduler),
      filter((items) => items.length > 0),
    );
}
