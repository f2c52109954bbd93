import { concatMap, type OperatorFunction } from 'rxjs';

/**
 * The engine batch an input is computed in, by the input's key: all the batch's members in their
 * fixed order (members answered before a restart included), or undefined: the input alone. A stage's
 * rule depends on the round's record list only, never on timing, because the batch composition
 * changes float rounding (e.g. promptChunks: fixed chunks of the round's prompt list).
 */
export type BatchOf<In> = (key: string) => readonly In[] | undefined;

/** Every input alone in its engine call. */
export const alone = <In>(): BatchOf<In> => () => undefined;

/**
 * Per input, in arrival order: its answer from one engine call per batch, made when the batch's
 * first member arrives (whatever arrives when), so every answer's float rounding is fixed by the
 * batch rule alone; members still to come take their answers from that call.
 *
 *   c-a-b-|  answerInBatches(batches {a,b,c})   call([a,b,c]) → -C-A-B-|
 */
export function answerInBatches<In, Out>(keyOf: (input: In) => string, batchOf: BatchOf<In>, call: (batch: In[]) => Promise<Out[]>): OperatorFunction<In, Out> {
  return (inputs$) => {
    // batch → its answers and the members not yet asked for (an entry goes when all were asked)
    const open = new Map<readonly In[], { answers: Promise<Out[]>; waiting: Set<string> }>();
    return inputs$.pipe(
      concatMap(async (input) => {
        const key = keyOf(input);
        const batch = batchOf(key) ?? [input];
        let entry = open.get(batch);
        if (!entry) {
          entry = { answers: call([...batch]), waiting: new Set(batch.map(keyOf)) };
          open.set(batch, entry);
        }
        entry.waiting.delete(key);
        if (entry.waiting.size === 0) open.delete(batch);
        const answers = await entry.answers;
        return answers[batch.findIndex((m) => keyOf(m) === key)];
      }),
    );
  };
}
