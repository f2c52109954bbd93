import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface Asset {
  body: Buffer;
  contentType: string;
}

/** The dashboard's files, read once at start: the page, its script and style, and uPlot from node_modules. */
export function loadAssets(): Map<string, Asset> {
  const page = (name: string) => readFileSync(fileURLToPath(new URL(`./page/${name}`, import.meta.url)));
  const require = createRequire(import.meta.url);
  const uplot = (name: string) => readFileSync(require.resolve(`uplot/dist/${name}`));
  const html = { body: page('index.html'), contentType: 'text/html; charset=utf-8' };
  return new Map<string, Asset>([
    ['/', html],
    ['/index.html', html],
    ['/app.js', { body: page('app.js'), contentType: 'text/javascript; charset=utf-8' }],
    ['/app.css', { body: page('app.css'), contentType: 'text/css; charset=utf-8' }],
    ['/vendor/uPlot.iife.min.js', { body: uplot('uPlot.iife.min.js'), contentType: 'text/javascript; charset=utf-8' }],
    ['/vendor/uPlot.min.css', { body: uplot('uPlot.min.css'), contentType: 'text/css; charset=utf-8' }],
  ]);
}
