import { InvalidArgumentError } from 'commander';
import { loraSchema, type LoraConfig } from '../config/schema.ts';

/** `r=16,alpha=32,targets=q,k,v,o,gate,up,down` → a LoRA config validated by the run-config schema's own rule. */
export function parseLoraFlag(text: string): LoraConfig {
  const parsed = loraSchema.safeParse(text);
  if (!parsed.success) throw new Error(`--lora ${text}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** commander parser of --lora (dice train). */
export function loraFlag(value: string): LoraConfig {
  try {
    return parseLoraFlag(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}
