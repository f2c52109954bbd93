import { logLevel, type logCreator } from 'kafkajs';

/**
 * kafkajs's own logging is loud: every retried protocol error (a coordinator still loading, a
 * broker restarting) is an ERROR line although kafkajs recovers from it, and what it cannot recover
 * from reaches us as a thrown error anyway. This adapter prints one JSON line per event to stderr,
 * WARN and up by default, leaves out retried request errors unless asked, and lets
 * DICE_KAFKA_LOG=debug|info|warn|error|nothing pick the level.
 */
const LEVELS: Record<string, logLevel> = {
  nothing: logLevel.NOTHING,
  error: logLevel.ERROR,
  warn: logLevel.WARN,
  info: logLevel.INFO,
  debug: logLevel.DEBUG,
};

export function kafkaLogLevel(): logLevel {
  const name = (process.env.DICE_KAFKA_LOG ?? 'warn').toLowerCase();
  const level = LEVELS[name];
  if (level === undefined) {
    throw new Error(`DICE_KAFKA_LOG must be one of ${Object.keys(LEVELS).join(', ')}, got ${JSON.stringify(name)}`);
  }
  return level;
}

const LABEL: Record<number, string> = { 1: 'error', 2: 'warn', 4: 'info', 5: 'debug' };

export const kafkaLogCreator: logCreator = (level) => {
  const verbose = level >= logLevel.INFO;
  return ({ namespace, level: entryLevel, log }) => {
    const { message, timestamp: _ts, logger: _logger, ...rest } = log;
    // Retried request failures: kafkajs logs them at ERROR before retrying; they are noise unless debugging.
    if (!verbose && namespace === 'Connection' && typeof message === 'string' && message.startsWith('Response ')) return;
    const line = { level: LABEL[entryLevel] ?? entryLevel, source: `kafkajs.${namespace}`, message, ...rest, ...(verbose ? { at: _ts } : {}) };
    process.stderr.write(`${JSON.stringify(line)}\n`);
  };
};
