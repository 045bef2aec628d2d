// The big-screen cockpit at 1920×1080: it draws only after the embedded font has loaded, a case
// reported elsewhere reaches it through the live feed (ticker and tallies), the map drills down from
// the town to a workstation and a grid, each of the five screens is photographed, and the smart
// components' screen shows what the API says of the simulated devices.
import { test, expect } from '@playwright/test';
import { accessible, login, placeOfGw001, shoot, token } from './helpers.mjs';

const BIG_SCREEN = { viewport: { width: 1920, height: 1080 } };

test('a case reported elsewhere appears on the cockpit through the live feed', async ({ browser, request }) => {
  const place = await placeOfGw001(request);
  const cockpit = await login(browser, 'commander', BIG_SCREEN);
  const started = Date.now();
  await cockpit.goto('/cockpit?rotate=0');
  await cockpit.waitForSelector('body[data-ready=yes]');
  const firstPaint = Date.now() - started;
  expect(firstPaint).toBeLessThan(5_000);
  // The charts are drawn on canvas: only with the font loaded first are their labels Chinese.
  expect(await cockpit.evaluate(() => document.fonts.check(`700 16px 'Noto Sans SC'`, '平安'))).toBe(true);
  await expect(cockpit.locator('#feed')).toHaveAttribute('data-state', 'open');
  await expect(cockpit.locator('#map-safety canvas')).toHaveCount(1);
  const openTile = cockpit.locator('[data-tile="open"] .value');
  await expect(openTile).not.toHaveText('–');
  const before = Number((await openTile.textContent()).replace(/,/g, ''));

  const created = await request.post('/api/v1/cases', {
    headers: { authorization: `Bearer ${await token(request, 'intake')}` },
    data: { matter: '06010', description: '广场边堆放垃圾', location: place, address: '清源广场' },
  });
  expect(created.status()).toBe(201);
  const number = (await created.json()).number;
  await expect(cockpit.locator('#ticker li').first()).toContainText(number, { timeout: 5_000 });
  await expect(cockpit.locator('#ticker li').first()).toHaveClass(/fresh/);
  // Grouped as the page groups it (3,455 on a full town).
  await expect(openTile).toHaveText(new Intl.NumberFormat('zh-CN').format(before + 1), { timeout: 5_000 });
  await expect(cockpit.locator('[data-age="situation"]').first()).toHaveText(/秒前/);

  // Drill down: a click on the map opens the workstation, a second its grid; the town is one click back.
  const map = await cockpit.locator('#map-safety').boundingBox();
  const centre = [map.x + map.width / 2, map.y + map.height / 2];
  await cockpit.mouse.click(...centre);
  await expect(cockpit.locator('[data-crumbs="safety"] button')).toHaveCount(2);
  await cockpit.mouse.click(...centre);
  await expect(cockpit.locator('[data-crumbs="safety"] button')).toHaveCount(3);
  await cockpit.locator('[data-crumbs="safety"] button').first().click();
  await expect(cockpit.locator('[data-crumbs="safety"] button')).toHaveCount(1);

  await accessible(cockpit);
  for (const screen of ['safety', 'economy', 'rural', 'livelihood', 'sensing']) {
    await cockpit.click(`#tab-${screen}`);
    await expect(cockpit.locator(`#screen-${screen}`)).toBeVisible();
    await expect(cockpit.locator(`#screen-${screen} .chart canvas`).first()).toBeVisible();
    await cockpit.waitForTimeout(800); // the charts' entry animation
    await shoot(cockpit, `cockpit-${screen}`);
  }
  console.log(`cockpit first paint: ${firstPaint} ms`);
});

test('the smart components screen shows the alarms, devices and people flow the API reports', async ({ browser, request }) => {
  const cockpit = await login(browser, 'commander', BIG_SCREEN);
  await cockpit.goto('/cockpit?rotate=0&screen=sensing');
  await cockpit.waitForSelector('body[data-ready=yes]');
  await expect(cockpit.locator('#screen-sensing')).toBeVisible();
  const api = await request.get('/api/v1/cockpit/sensing', {
    headers: { authorization: `Bearer ${await token(request, 'commander')}` },
  });
  expect(api.status()).toBe(200);
  const x = await api.json();
  const devices = x.devices.reduce((n, d) => n + d.total, 0);
  expect(devices).toBeGreaterThan(0);
  // Devices go offline only after three silent intervals, so the screen's read and the test's agree.
  await expect(cockpit.locator('[data-tile="devices_offline"] .value'))
    .toHaveText(String(x.devices.reduce((n, d) => n + d.offline, 0)));
  await expect(cockpit.locator('[data-tile="alarms_active"] .value')).not.toHaveText('–');
  await expect(cockpit.locator('[data-tile="crowded"] .value')).toHaveText(new RegExp(`/ ${x.checkpoints.length}$`));
  // Every checkpoint has a place (the middle of its counters) and a diamond on the map.
  expect(x.checkpoints.length).toBeGreaterThan(0);
  for (const c of x.checkpoints) {
    expect(c.location, c.checkpoint).toBeTruthy();
    expect(c.grid, c.checkpoint).toBeTruthy();
  }
  await expect(cockpit.locator('#map-sensing')).toHaveAttribute('data-checkpoints', String(x.checkpoints.length));
  const rows = cockpit.locator('[data-table="first-alarms"] tbody tr');
  if (x.first.length > 0) {
    await expect(rows).toHaveCount(x.first.length);
    await expect(rows.first().locator('.sev')).toHaveText(/紧急|重要|次要|提示/);
  }
  for (const id of ['map-sensing', 'chart-faults', 'chart-devices', 'chart-occupancy', 'chart-flow']) {
    await expect(cockpit.locator(`#${id} canvas`).first()).toBeVisible();
  }
  await expect(cockpit.locator('[data-age="sensing"]').first()).toHaveText(/秒前/);
});

test('each watching post has its own view; other posts are refused', async ({ browser }) => {
  const supervisor = await login(browser, 'supervisor', BIG_SCREEN);
  await supervisor.goto('/cockpit');
  await supervisor.waitForSelector('body[data-ready=yes]');
  await expect(supervisor.locator('.post[data-for="supervisor"]')).toBeVisible();
  await expect(supervisor.locator('.post[data-for="commander"]')).toBeHidden();
  await expect(supervisor.locator('[data-table="overdue"] th').first()).toHaveText('案件');
  await expect(supervisor.locator('#rotate')).not.toBeChecked();
  const coordinator = await login(browser, 'coordinator', BIG_SCREEN);
  await coordinator.goto('/cockpit');
  await coordinator.waitForSelector('body[data-ready=yes]');
  await expect(coordinator.locator('.post[data-for="coordinator"]')).toBeVisible();
  const intake = await login(browser, 'intake');
  const refused = await intake.goto('/cockpit');
  expect(refused.status()).toBe(403);
});
