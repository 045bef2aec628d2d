// What the browser specs share: logging in as a post, screenshots, the axe check, a place in a
// grid worker's grid.
import { expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import fs from 'node:fs';
import path from 'node:path';

export const PASSWORD = 'civicgrid-demo';
const shots = process.env.CIVICGRID_SCREENSHOTS;

export async function shoot(page, name) {
  if (!shots) return;
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

export async function login(browser, username, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.on('pageerror', (e) => { throw e; });
  await page.goto('/login');
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  await page.click('button[type=submit]');
  await expect(page.locator('header.bar')).toBeVisible();
  return page;
}

/** No serious or critical accessibility violations on the page as it is now. */
export async function accessible(page) {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  expect(bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target).join(' ')}`)).toEqual([]);
}

/** Opens the step's form on the case page, fills it and submits it. */
export async function step(page, action, fill = async () => {}) {
  const form = page.locator(`details[data-action="${action}"]`);
  await form.locator('summary').click();
  await fill(form);
  await form.locator('button[type=submit]').click();
  await expect(page.locator('.timeline')).toBeVisible();
  await expect(page.locator('.error')).toHaveCount(0);
}

/** A point inside the first grid of the grid worker gw001 (who will verify there). */
export async function placeOfGw001(request) {
  const token = (await (await request.post('/api/v1/auth/login', { data: { username: 'gw001', password: PASSWORD } })).json()).token;
  const headers = { authorization: `Bearer ${token}` };
  const me = await (await request.get('/api/v1/auth/me', { headers })).json();
  const grids = await (await request.get('/api/v1/grids.geojson', { headers })).json();
  const grid = grids.features.find((f) => JSON.stringify(f.properties).includes(me.grids[0]));
  const ring = grid.geometry.type === 'Polygon' ? grid.geometry.coordinates[0] : grid.geometry.coordinates[0][0];
  const [lon, lat] = ring.slice(0, -1).reduce(([x, y], [a, b]) => [x + a / (ring.length - 1), y + b / (ring.length - 1)], [0, 0]);
  return { lat, lon };
}

/** A bearer token of `username`, for requests made beside the browser. */
export async function token(request, username) {
  const resp = await request.post('/api/v1/auth/login', { data: { username, password: PASSWORD } });
  return (await resp.json()).token;
}

/** A small JPEG "photo" (a rendered patch of colour), as a file for a form's file input. */
export async function photo(browser, name = '现场.jpg') {
  const page = await browser.newPage({ viewport: { width: 320, height: 240 } });
  await page.setContent('<body style="margin:0;background:#6f8f5a"></body>');
  const buffer = await page.screenshot({ type: 'jpeg', quality: 60 });
  await page.close();
  return { name, mimeType: 'image/jpeg', buffer };
}
