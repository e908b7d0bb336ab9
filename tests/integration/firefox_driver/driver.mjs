// Debian's firefox-esr driven over WebDriver BiDi with puppeteer-core (no browser download), one
// browser per process, controlled line by line over stdin/stdout by tests/integration/firefox.py (this directory is its node side):
//   in:  {"id": 1, "op": "goto", "url": "...", "timeout_ms": 180000} | {"id": 2, "op": "eval", "expr": "..."}
//        | {"id": 3, "op": "wait", "selector": "...", "timeout_ms": 30000} | {"id": 4, "op": "click", "selector": "..."}
//        | {"id": 5, "op": "close"}
//   out: {"id": 1, "ok": true, "value": ...} or {"id": 1, "ok": false, "error": "..."}
//        and {"console": "..."} for every console message of the page.
// Argument: a JSON object {"executable": "/usr/bin/firefox-esr", "prefs": {...}, "display": ":N"?}.

import readline from 'node:readline';
import puppeteer from 'puppeteer-core';

const options = JSON.parse(process.argv[2] ?? '{}');

function send(message) {
  process.stdout.write(JSON.stringify(message) + '\n');
}

const browser = await puppeteer.launch({
  browser: 'firefox',
  protocol: 'webDriverBiDi',
  executablePath: options.executable ?? '/usr/bin/firefox-esr',
  // headless unless the test gives Firefox an X display (screen capture needs one: Xvfb)
  headless: !options.display,
  ...(options.display ? { env: { ...process.env, DISPLAY: options.display } } : {}),
  extraPrefsFirefox: options.prefs ?? {},
  args: options.args ?? [],
});
const page = (await browser.pages())[0] ?? (await browser.newPage());
page.on('console', (msg) => send({ console: `${msg.type()}: ${msg.text()}` }));
page.on('pageerror', (err) => send({ console: `pageerror: ${err?.message ?? err}` }));
send({ ready: true, version: await browser.version() });

async function run(command) {
  switch (command.op) {
    case 'goto':
      await page.goto(command.url, { waitUntil: 'load', timeout: command.timeout_ms ?? 180_000 });
      return null;
    case 'eval':
      // an expression evaluated in the page; promises are awaited, the value must be JSON
      return await page.evaluate(`(async () => JSON.stringify(await (${command.expr})))()`).then(
        (text) => (text === undefined ? null : JSON.parse(text)),
      );
    case 'click':
      // a real click (WebDriver BiDi input actions): a user gesture, as getDisplayMedia requires
      await page.click(command.selector);
      return null;
    case 'wait':
      await page.waitForSelector(command.selector, { timeout: command.timeout_ms ?? 30_000 });
      return null;
    case 'close':
      await browser.close();
      return null;
    default:
      throw new Error(`unknown op ${command.op}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  let command;
  try {
    command = JSON.parse(line);
  } catch {
    continue;
  }
  try {
    send({ id: command.id, ok: true, value: await run(command) });
  } catch (err) {
    send({ id: command.id, ok: false, error: String(err?.stack ?? err) });
  }
  if (command.op === 'close') break;
}
await browser.close().catch(() => {});
process.exit(0);
