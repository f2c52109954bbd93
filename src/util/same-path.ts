import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';

/** True when two paths name the same file or directory (symlinks and `..` resolved; a missing path by its absolute form). */
export function samePath(a: string, b: string): boolean {
  return canonical(a) === canonical(b);
}

function canonical(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}
