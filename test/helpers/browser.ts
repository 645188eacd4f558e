// A minimal browser for e2e tests: a real cookie jar (path/expiry aware), manual redirects,
// and forms read from the rendered HTML the way a person's browser would submit them.
import { parse, type HTMLElement } from 'node-html-parser';
import { CookieJar } from 'tough-cookie';

export interface Page {
  url: string;
  status: number;
  headers: Headers;
  html: string;
  doc: HTMLElement;
}

export class Browser {
  jar = new CookieJar();
  readonly userAgent: string;

  constructor(userAgent = 'latchkey-e2e-browser') {
    this.userAgent = userAgent;
  }

  async request(url: string, init: { method?: string; body?: URLSearchParams | string; headers?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string> = { 'user-agent': this.userAgent, accept: 'text/html', ...init.headers };
    const cookie = await this.jar.getCookieString(url);
    if (cookie) headers.cookie = cookie;
    if (init.body instanceof URLSearchParams) headers['content-type'] ??= 'application/x-www-form-urlencoded';
    const res = await fetch(url, { method: init.method ?? 'GET', headers, body: init.body?.toString(), redirect: 'manual' });
    for (const set of res.headers.getSetCookie()) await this.jar.setCookie(set, url, { ignoreError: true });
    return res;
  }

  /**
   * Follows redirects until a page is rendered, or until a redirect leaves `origin`
   * (the RP callback): then returns that URL without fetching it.
   */
  async follow(url: string, init: Parameters<Browser['request']>[1] = {}, origin = new URL(url).origin): Promise<Page | { redirect: string }> {
    let res = await this.request(url, init);
    let current = url;
    for (let i = 0; i < 20 && res.status >= 300 && res.status < 400; i++) {
      const next = new URL(res.headers.get('location')!, current).toString();
      if (new URL(next).origin !== origin) return { redirect: next };
      current = next;
      res = await this.request(next);
    }
    const html = await res.text();
    return { url: current, status: res.status, headers: res.headers, html, doc: parse(html) };
  }

  async get(url: string, origin?: string) {
    return this.follow(url, {}, origin);
  }

  /** Clicks a submit button with its own `formaction` (e.g. "Email me a sign-in link") in its form. */
  async submitWith(page: Page, buttonSelector: string, fields: Record<string, string> = {}) {
    const button = page.doc.querySelector(buttonSelector);
    if (!button) throw new Error(`no button ${buttonSelector} on ${page.url}`);
    let form = button.parentNode;
    while (form && form.tagName !== 'FORM') form = form.parentNode;
    if (!form) throw new Error(`button ${buttonSelector} is not in a form`);
    const body = new URLSearchParams();
    for (const input of form.querySelectorAll('input')) {
      const name = input.getAttribute('name');
      if (name) body.set(name, input.getAttribute('value') ?? '');
    }
    for (const [k, v] of Object.entries(fields)) body.set(k, v);
    const action = new URL(button.getAttribute('formaction') ?? form.getAttribute('action') ?? page.url, page.url).toString();
    return this.follow(action, { method: 'POST', body }, new URL(page.url).origin);
  }

  /** Submits the form matching `selector` on `page`, with `fields` overriding its inputs. */
  async submit(page: Page, selector: string, fields: Record<string, string> = {}, button?: { name: string; value: string }) {
    const form = page.doc.querySelector(selector);
    if (!form) throw new Error(`no form ${selector} on ${page.url}:\n${page.html.slice(0, 500)}`);
    const body = new URLSearchParams();
    for (const input of form.querySelectorAll('input')) {
      const name = input.getAttribute('name');
      if (name) body.set(name, input.getAttribute('value') ?? '');
    }
    for (const [k, v] of Object.entries(fields)) body.set(k, v);
    if (button) body.set(button.name, button.value);
    const action = new URL(form.getAttribute('action') ?? page.url, page.url).toString();
    return this.follow(action, { method: (form.getAttribute('method') ?? 'get').toUpperCase(), body }, new URL(page.url).origin);
  }
}

export function isPage(x: Page | { redirect: string }): x is Page {
  return 'html' in x;
}

export function asPage(x: Page | { redirect: string }): Page {
  if (!isPage(x)) throw new Error(`expected a page, got a redirect to ${x.redirect}`);
  return x;
}

export function asRedirect(x: Page | { redirect: string }): string {
  if (isPage(x)) throw new Error(`expected a redirect to the RP, got page ${x.url} (${x.status}):\n${x.doc.querySelector('main')?.text.trim().slice(0, 400)}`);
  return x.redirect;
}
