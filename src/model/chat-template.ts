/**
 * Chat templates: the Jinja `chat_template` of tokenizer_config.json (or chat_template.jinja, as
 * transformers 5 saves it) rendered with @huggingface/jinja, given what transformers' apply_chat_template
 * gives a template: messages, add_generation_prompt, the special tokens (raise_exception comes with the library).
 * The rendered text already holds any BOS the template writes: encode it with addSpecialTokens: false.
 */
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface RenderOptions {
  /** Append the assistant header so the model writes the reply. */
  addGenerationPrompt?: boolean;
}

const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token'];

export class ChatTemplate {
  readonly source: string;
  private readonly template: Template;
  private readonly specialTokens: Record<string, string>;

  /** `specialTokens`: bos_token, eos_token, ... as strings (tokenizer_config.json's values). */
  constructor(source: string, specialTokens: Record<string, string> = {}, origin = 'chat_template') {
    this.source = source;
    this.specialTokens = specialTokens;
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new Error(`${origin}: cannot parse the chat template (${(err as Error).message})`);
    }
  }

  /**
   * The template of a tokenizer_config.json (a string, or a list of named templates of which "default"
   * is used), or `jinjaFile`'s text when given (transformers 5 keeps it there). Null when there is none.
   */
  static fromTokenizerConfig(tokenizerConfig: Record<string, unknown>, jinjaFile?: string | null, origin = 'tokenizer_config.json'): ChatTemplate | null {
    const specials: Record<string, string> = {};
    for (const key of SPECIAL_KEYS) {
      const v = tokenizerConfig[key];
      const content = typeof v === 'string' ? v : (v as { content?: unknown } | null)?.content;
      if (typeof content === 'string') specials[key] = content;
    }
    if (jinjaFile) return new ChatTemplate(jinjaFile, specials, origin);
    let source = tokenizerConfig.chat_template;
    if (Array.isArray(source)) {
      source = (source as Array<{ name?: unknown; template?: unknown }>).find((t) => t.name === 'default')?.template;
      if (source === undefined) throw new Error(`${origin}: chat_template is a list without a "default" entry`);
    }
    if (source === undefined || source === null) return null;
    if (typeof source !== 'string') throw new Error(`${origin}: chat_template must be a string, got ${typeof source}`);
    return new ChatTemplate(source, specials, origin);
  }

  render(messages: ChatMessage[], opts: RenderOptions = {}): string {
    return this.template.render({
      ...this.specialTokens,
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    }); // raise_exception and strftime_now are globals of @huggingface/jinja
  }
}
