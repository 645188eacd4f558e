// Page rendering: one nunjucks environment, shared defaults for every page.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import nunjucks from 'nunjucks';
import type { Context } from 'koa';

const VIEWS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../views');

export function createViews(options: { productName: string; themeDir?: string }) {
  const dirs = options.themeDir ? [options.themeDir, VIEWS_DIR] : [VIEWS_DIR];
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dirs, { noCache: false }), { autoescape: true });

  function renderString(template: string, vars: Record<string, unknown> = {}): string {
    return env.render(`${template}.njk`, { productName: options.productName, ...vars });
  }

  /** Renders a page into the koa response. */
  function render(ctx: Context, template: string, vars: Record<string, unknown> = {}, status = 200): void {
    ctx.status = status;
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = renderString(template, { csrfToken: ctx.state.csrfToken, ...vars });
  }

  return { render, renderString };
}

export type Views = ReturnType<typeof createViews>;
