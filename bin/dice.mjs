#!/usr/bin/env node
// The CLI is TypeScript run through tsx's loader: no build step between `npm install` and `npx dice`.
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv.slice(2));
