// First paint of the cockpit in headless Chromium, for `civicgrid bench --ui-cases`: for each run a
// fresh browser context (cold cache: bundle, font and data all fetched), logged in through the form,
// then the time from navigation to the cockpit saying it has drawn (body[data-ready=yes]). The
// reference is the same navigation to the static about page (until its load event).
// Usage: node paint.mjs BASE_URL RUNS [PASSWORD of `commander`]; prints one JSON line {"cockpit": [ms…], "about": [ms…]}.
import { chromium } from 'playwright-core';

const [base, runsArg, password = 'civicgrid-demo'] = process.argv.slice(2);
const runs = Number(runsArg || 5);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const result = { cockpit: [], about: [] };
const login = await browser.newContext({ locale: 'zh-CN' });
const form = await login.newPage();
await form.goto(`${base}/login`);
await form.fill('#username', 'commander');
await form.fill('#password', password);
await Promise.all([form.waitForURL(`${base}/`), form.click('button[type=submit]')]);
const storageState = await login.storageState();
await login.close();
/** Milliseconds from navigating to `path` in a fresh context until `ready` resolves. */
async function measure(path, ready) {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 }, locale: 'zh-CN', storageState });
  const page = await context.newPage();
  const t = Date.now();
  await page.goto(`${base}${path}`, { waitUntil: 'commit' });
  await ready(page);
  const ms = Date.now() - t;
  await context.close();
  return ms;
}
for (let i = 0; i < runs; i++) {
  result.about.push(await measure('/about', (p) => p.waitForLoadState('load')));
  result.cockpit.push(await measure('/cockpit?rotate=0', (p) => p.waitForSelector('body[data-ready=yes]', { timeout: 30_000 })));
}
await browser.close();
console.log(JSON.stringify(result));
