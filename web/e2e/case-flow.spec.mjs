// A case from report to call-back in the browser, as each post would run it: intake reports it with a
// photo and accepts it, the shift leader files it, the dispatcher dispatches it, the department
// signs and replies, the grid worker verifies on site (the phone's position), the shift leader closes
// it and intake calls the reporter back. Along the way: fonts, live queues, axe, screenshots.
import { test, expect } from '@playwright/test';
import { accessible, login, placeOfGw001, shoot, step, token } from './helpers.mjs';

test('a case runs from report to call-back in the browser', async ({ browser, request }) => {
  const place = await placeOfGw001(request);
  const intake = await login(browser, 'intake');
  // The embedded font is what the page draws with (machines without CJK fonts show boxes otherwise).
  await intake.evaluate(() => document.fonts.ready);
  expect(await intake.evaluate(() => document.fonts.check('16px "Noto Sans SC"', '工作台'))).toBe(true);
  await accessible(intake);
  await shoot(intake, 'console-intake');

  // Report with a photo; the place is picked on the grid map (then set exactly).
  await intake.click('a[href="/report"]');
  await intake.locator('.leaflet-container').waitFor();
  await intake.locator('.map.pick').click();
  await expect(intake.locator('input[name=lat]')).not.toHaveValue('');
  await intake.fill('#matter', '06010');
  await intake.selectOption('select[name=source]', 'hotline12345');
  await intake.fill('#description', '桥洞下堆放建筑垃圾，影响通行');
  await intake.fill('input[name=lat]', place.lat.toFixed(6));
  await intake.fill('input[name=lon]', place.lon.toFixed(6));
  await intake.fill('#address', '清源路桥洞');
  await intake.fill('input[name=reporter_name]', '陈先生');
  await intake.fill('input[name=reporter_phone]', '13912345678');
  const photo = await intake.screenshot({ type: 'jpeg', quality: 60, clip: { x: 0, y: 0, width: 320, height: 240 } });
  await intake.setInputFiles('#photos', { name: '现场.jpg', mimeType: 'image/jpeg', buffer: photo });
  await accessible(intake);
  await shoot(intake, 'report');
  await intake.click('.report-form button[type=submit]');
  await expect(intake).toHaveURL(/\/cases\/\d+$/);
  const caseUrl = new URL(intake.url()).pathname;
  await expect(intake.locator('.thumbs img')).toHaveCount(1);
  await step(intake, 'accept');

  // The shift leader's queue lists it to file.
  const shift = await login(browser, 'shift');
  await expect(shift.locator(`a[href="${caseUrl}"]`)).toBeVisible();
  await shift.goto(caseUrl);
  await step(shift, 'file');

  const dispatch = await login(browser, 'dispatch');
  await dispatch.goto(caseUrl);
  await step(dispatch, 'dispatch', async (form) => {
    await form.locator('select[name=lead]').selectOption('chengguan');
  });
  await accessible(dispatch);
  await shoot(dispatch, 'case-dispatched');

  const dept = await login(browser, 'dept_chengguan');
  await expect(dept.locator(`a[href="${caseUrl}"]`)).toBeVisible();
  await dept.goto(caseUrl);
  await step(dept, 'sign');
  await step(dept, 'reply', async (form) => {
    await form.locator('textarea[name=reason]').fill('已清运完毕');
  });

  // On site: the phone's position fills the form (127.0.0.1 is a secure context).
  const gw = await login(browser, 'gw001', {
    viewport: { width: 360, height: 800 },
    geolocation: { latitude: place.lat, longitude: place.lon },
    permissions: ['geolocation'],
    isMobile: true,
  });
  await gw.goto(caseUrl);
  await expect(gw.locator('details[data-action="verify_pass"] input[name=lat]')).not.toHaveValue('');
  await step(gw, 'verify_pass', async (form) => {
    await form.locator('input[type=file]').setInputFiles({ name: '核查.jpg', mimeType: 'image/jpeg', buffer: photo });
  });
  await accessible(gw);
  await shoot(gw, 'phone-case');

  // The shift leader's queue of cases to close lists it.
  await shift.goto('/?q=to_close');
  await expect(shift.locator(`a[href="${caseUrl}"]`)).toBeVisible();
  await shoot(shift, 'console-shift-to-close');
  await shift.goto(caseUrl);
  await step(shift, 'close');
  await intake.goto(caseUrl);
  await step(intake, 'call_back', async (form) => {
    await form.locator('select[name=satisfaction]').selectOption('very_satisfied');
  });
  await expect(intake.locator('.case-head .state')).toHaveText('已结案');
  await shoot(intake, 'case-closed');
});

test('a live console refreshes when another post changes a case', async ({ browser, request }) => {
  const place = await placeOfGw001(request);
  const intake = await login(browser, 'intake');
  await intake.waitForFunction(() => document.body.dataset.liveState === 'open');
  const before = await intake.locator('[data-queue="new"] .count').textContent();
  // Someone reports through the API while the console is open.
  const created = await request.post('/api/v1/cases', {
    headers: { authorization: `Bearer ${await token(request, 'shift')}` },
    data: { matter: '06010', description: '路边垃圾', location: place, address: '测试路' },
  });
  expect(created.status()).toBe(201);
  const id = (await created.json()).id;
  await expect(intake.locator(`a[href="/cases/${id}"]`)).toBeVisible({ timeout: 10_000 });
  expect(await intake.locator('[data-queue="new"] .count').textContent()).not.toBe(before);
});
