/**
 * The topic names both buses accept: Kafka's rule (1–249 characters of A–Z a–z 0–9 . _ -, and not
 * "." or ".."), so a name that works on the embedded bus works on Kafka too.
 */
const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

export function checkTopicName(name: string): void {
  if (typeof name !== 'string' || !TOPIC_NAME.test(name) || name === '.' || name === '..') {
    throw new Error(`topic name ${JSON.stringify(name)} is invalid: use 1–249 characters of A–Z a–z 0–9 . _ - (not "." or "..")`);
  }
}
