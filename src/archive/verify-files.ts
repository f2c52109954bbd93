import type { Checkpoint } from '../../topics/checkpoints.ts';
import type { StageVerdict } from './verify-report.ts';

type Comparison = Pick<StageVerdict, 'topic' | 'records' | 'differing' | 'identical' | 'first'>;

/**
 * The recorded checkpoint's own file must still be what the recording says: a final checkpoint
 * (no later round reads it) is otherwise never opened, and an altered one would pass unseen.
 * `locate` returns its directory after checking the weights' sha256, or throws saying what is wrong.
 */
export function withCheckpointFile(comparison: Comparison, recorded: Checkpoint, locate: () => string): Comparison {
  let problem: string | null = null;
  try {
    locate();
  } catch (err) {
    problem = err instanceof Error ? err.message : String(err);
  }
  if (problem === null) return comparison;
  return {
    ...comparison,
    differing: Math.max(comparison.differing, 1),
    identical: false,
    first: comparison.first ?? { key: String(recorded.version), path: 'location', recorded: `${recorded.location} with sha256 ${recorded.sha256}`, rederived: problem },
  };
}
