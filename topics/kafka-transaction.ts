import type { Producer, TopicMessages } from 'kafkajs';
import { sleep } from './kafka-retry.ts';

/** A group offset to commit in a transaction, and a partition's end after what it wrote. */
export interface OffsetCommit {
  topic: string;
  partition: number;
  offset: number;
}
export interface PartitionEnd {
  topic: string;
  partition: number;
  end: number;
}

/** One transaction: `topicMessages` written and `commits` committed for `groupId`, or neither. */
export async function runTransaction(producer: Producer, groupId: string, topicMessages: TopicMessages[], commits: OffsetCommit[], what: string): Promise<PartitionEnd[]> {
  const tx = await producer.transaction();
  const lastOffsets: PartitionEnd[] = [];
  try {
    if (topicMessages.length > 0) {
      const meta = await tx.sendBatch({ topicMessages, acks: -1 });
      for (const m of meta) {
        const count = topicMessages.find((t) => t.topic === m.topicName)!.messages.filter((x) => x.partition === m.partition).length;
        lastOffsets.push({ topic: m.topicName, partition: m.partition, end: Number(m.baseOffset) + count });
      }
    }
    if (commits.length > 0) {
      const offsetsByTopic = new Map<string, Array<{ partition: number; offset: string }>>();
      for (const c of commits) {
        let list = offsetsByTopic.get(c.topic);
        if (!list) offsetsByTopic.set(c.topic, (list = []));
        list.push({ partition: c.partition, offset: String(c.offset) });
      }
      await tx.sendOffsets({
        consumerGroupId: groupId,
        topics: [...offsetsByTopic].map(([topic, partitions]) => ({ topic, partitions })),
      });
    }
    await tx.commit();
  } catch (err) {
    await tx.abort().catch(() => {});
    throw new Error(`${what} (group ${groupId}): the transaction failed and was aborted, nothing is visible: ${(err as Error).message}`);
  }
  return lastOffsets;
}

/**
 * Resolves once a transaction's commits and writes are visible (committed offsets, read_committed
 * end offsets): the broker writes the commit markers just after EndTxn returns.
 */
export async function waitVisible(
  bus: { committed(topic: string): Promise<number[]>; endOffsets(topic: string): Promise<Array<{ partition: number; offset: string }>> },
  groupId: string,
  commits: OffsetCommit[],
  ends: PartitionEnd[],
  exact = false,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (let delay = 2; ; delay = Math.min(delay * 2, 100)) {
    let visible = true;
    for (const topic of new Set(commits.map((c) => c.topic))) {
      const now = await bus.committed(topic);
      if (commits.some((c) => c.topic === topic && (exact ? now[c.partition] !== c.offset : now[c.partition] < c.offset))) visible = false;
    }
    for (const topic of new Set(ends.map((e) => e.topic))) {
      const offsets = await bus.endOffsets(topic);
      for (const e of ends) {
        if (e.topic === topic && Number(offsets.find((o) => o.partition === e.partition)?.offset ?? -1) < e.end) visible = false;
      }
    }
    if (visible) return;
    if (Date.now() > deadline) throw new Error(`produceAndCommit (group ${groupId}): committed, but not visible after 10 s`);
    await sleep(delay);
  }
}
