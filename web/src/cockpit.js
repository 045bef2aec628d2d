// The big-screen cockpit. The page (crates/http/templates/cockpit.html) is a shell of panels; this
// module draws them with ECharts from three reads — the open cases now (/api/v1/cockpit/situation),
// the KPI figures (/api/v1/cockpit/figures) and the smart components now (/api/v1/cockpit/sensing) —
// and keeps them live from one event stream:
//
// - every event goes into the ticker at once and makes its case flash on the map;
// - the situation is read again at most once a second while events arrive (always once after the
//   last of a burst), and every minute regardless (time alone makes cases overdue);
// - the figures are read every half minute, the smart components every fifteen seconds (alarms and
//   people counts are not case events, so they come by reading);
// - every panel shows the age of what it shows; past a limit it says the data has stalled.
//
// Nothing is drawn before the embedded Chinese font has loaded: canvas text drawn earlier stays boxes.
import * as echarts from 'echarts/core';
import { BarChart, EffectScatterChart, LineChart, PieChart, ScatterChart } from 'echarts/charts';
import { GeoComponent, GridComponent, LegendComponent, TooltipComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([BarChart, EffectScatterChart, LineChart, PieChart, ScatterChart, GeoComponent, GridComponent,
  LegendComponent, TooltipComponent, CanvasRenderer]);

const FONT = "'Noto Sans SC', 'PingFang SC', 'Microsoft YaHei', sans-serif";
const SITUATION_EVERY = 60_000;
const FIGURES_EVERY = 30_000;
const SENSING_EVERY = 15_000;
const ROTATE_EVERY = 30_000;
const FLASH_FOR = 15_000;
const TICKER_ROWS = 30;
/** How old each source may get before its panels say it has stalled. */
const STALE_AFTER = { situation: 2.5 * SITUATION_EVERY, figures: 3 * FIGURES_EVERY, sensing: 4 * SENSING_EVERY, feed: Infinity };
/** Alarm colours by severity, the same as the legend under the map. */
const SEVERITY_COLOUR = { critical: '#ff3b30', major: '#ff9f0a', minor: '#ffd60a', warning: '#64d2ff' };
const SEVERITY_SIZE = { critical: 16, major: 12, minor: 10, warning: 9 };
const PUBLIC_SOURCES = ['hotline12345', 'citizen_h5', 'police110', 'suggestion'];

const page = JSON.parse(document.body.dataset.cockpit);
const T = (key, vars = {}) => (page.text[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ''));
const number = new Intl.NumberFormat(page.lang);
const pct = (v) => `${(v ?? 0).toFixed(1)}%`;

// One theme per screen: the same dark ground, each screen its own accent colours.
const BASE = {
  backgroundColor: 'transparent',
  textStyle: { fontFamily: FONT, color: '#dce7f3', fontSize: 16 },
  legend: { itemWidth: 16, itemGap: 8, textStyle: { color: '#dce7f3', fontSize: 16 } },
  categoryAxis: { axisLabel: { color: '#b8c7d9', fontSize: 15 }, axisLine: { lineStyle: { color: '#3b5574' } } },
  valueAxis: { axisLabel: { color: '#b8c7d9', fontSize: 15 }, splitLine: { lineStyle: { color: '#1f3552' } } },
};
const THEMES = {
  safety: ['#3fa7ff', '#ff5a4e', '#ffb547', '#56d4a0', '#b08cff'],
  economy: ['#ffc94a', '#3fa7ff', '#ff7e5f', '#56d4a0', '#c6a7ff'],
  rural: ['#56d4a0', '#ffc94a', '#3fa7ff', '#ff7e5f', '#c6a7ff'],
  livelihood: ['#ff8fb1', '#56d4a0', '#3fa7ff', '#ffc94a', '#c6a7ff'],
  sensing: ['#56d4a0', '#ff9f0a', '#3fa7ff', '#ff3b30', '#c6a7ff'],
};
for (const [name, color] of Object.entries(THEMES)) echarts.registerTheme(name, { ...BASE, color });

const state = {
  geo: null,
  situation: null,
  figures: null,
  sensing: null,
  at: { situation: 0, figures: 0, sensing: 0, feed: 0 },
  flashes: new Map(),
  drill: { safety: [], rural: [], sensing: [] },
  screen: page.screen,
  maps: new Set(),
};
const charts = new Map();
const gridInfo = new Map();
const wsInfo = new Map(page.workstations.map((w) => [w.code, w]));

// ---------- reading ----------

async function read(url) {
  const resp = await fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } });
  if (resp.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent('/cockpit' + window.location.search)}`);
    throw new Error('logged out');
  }
  if (!resp.ok) throw new Error(`${url}: ${resp.status}`);
  return resp.json();
}

let situationBusy = false;
let situationAgain = false;
let situationTimer = null;
let lastSituation = 0;

async function refreshSituation() {
  if (situationBusy) {
    situationAgain = true;
    return;
  }
  situationBusy = true;
  try {
    state.situation = await read('/api/v1/cockpit/situation');
    state.at.situation = Date.now();
    lastSituation = Date.now();
    drawScreen(state.screen);
  } catch (e) {
    console.warn('cockpit: situation', e);
  } finally {
    situationBusy = false;
    if (situationAgain) {
      situationAgain = false;
      scheduleSituation();
    }
  }
}

/** At most one read a second, and always one after the last event of a burst. */
function scheduleSituation() {
  if (situationTimer) return;
  const wait = Math.max(0, 1000 - (Date.now() - lastSituation));
  situationTimer = setTimeout(() => {
    situationTimer = null;
    refreshSituation();
  }, wait);
}

let sensingTimer = null;
/** An alarm changed: read the smart components again within a second, once for a burst. */
function scheduleSensing() {
  if (sensingTimer) return;
  sensingTimer = setTimeout(() => {
    sensingTimer = null;
    refresh('sensing');
  }, 1000);
}

/** Reads one of the slower sources again (`figures`, `sensing`) and redraws the screen shown. */
async function refresh(source) {
  try {
    state[source] = await read(`/api/v1/cockpit/${source}`);
    state.at[source] = Date.now();
    drawScreen(state.screen);
  } catch (e) {
    console.warn(`cockpit: ${source}`, e);
  }
}

// ---------- the live feed ----------

function setFeed(status) {
  const el = document.getElementById('feed');
  el.dataset.state = status;
  el.textContent = T(`cockpit.feed.${status === 'open' ? 'live' : status === 'down' ? 'down' : 'connecting'}`);
  document.body.dataset.feed = status;
}

function connect(after) {
  // The browser resumes with Last-Event-ID after a dropped connection, so nothing is missed.
  const source = new EventSource(`/api/v1/stream?after=${after}`);
  source.addEventListener('open', () => setFeed('open'));
  source.addEventListener('error', () => setFeed('down'));
  source.addEventListener('case', (message) => {
    let entry;
    try {
      entry = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    state.at.feed = Date.now();
    state.flashes.set(entry.case_id, Date.now());
    pushTick({
      seq: entry.seq,
      at: entry.event.at,
      case_id: entry.case_id,
      number: entry.number,
      action: typeof entry.event.action === 'string' ? entry.event.action : entry.event.action.action,
      to: entry.event.to,
      grid: gridInfo.get(entry.grid)?.name ?? entry.grid,
    }, true);
    scheduleSituation();
  });
  // Alarm changes come on the same stream (to the centre's posts): the 物联感知 screen follows at once
  // instead of at its next poll.
  source.addEventListener('alarm', () => {
    state.at.feed = Date.now();
    scheduleSensing();
  });
}

// ---------- the frame: tabs, views, rotation, clock, ages ----------

function show(screen) {
  state.screen = screen;
  for (const el of document.querySelectorAll('.screen')) el.hidden = el.dataset.screen !== screen;
  for (const tab of document.querySelectorAll('[role=tab]')) {
    tab.setAttribute('aria-selected', String(tab.dataset.screen === screen));
  }
  document.body.dataset.screen = screen;
  drawScreen(screen);
  for (const el of document.querySelectorAll(`#screen-${screen} .chart`)) charts.get(el.id)?.resize();
}

let rotation = null;
function setRotation(on) {
  clearInterval(rotation);
  rotation = on ? setInterval(() => {
    const next = page.screens[(page.screens.indexOf(state.screen) + 1) % page.screens.length];
    show(next);
  }, ROTATE_EVERY) : null;
}

function age(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? T('cockpit.age.seconds', { n: s }) : T('cockpit.age.minutes', { n: Math.round(s / 60) });
}

function tickAges() {
  const now = Date.now();
  const clock = document.getElementById('clock');
  clock.textContent = new Date(now).toLocaleString(page.lang, { hour12: false, timeZone: 'Asia/Shanghai' });
  for (const el of document.querySelectorAll('[data-age]')) {
    const source = el.dataset.age;
    const at = source === 'feed' ? Math.max(state.at.feed, state.at.situation) : state.at[source];
    if (!at) continue;
    const stale = now - at > STALE_AFTER[source] || (source === 'feed' && document.body.dataset.feed === 'down');
    el.textContent = stale ? `${T('cockpit.age.stale')} · ${age(now - at)}` : age(now - at);
    el.classList.toggle('stale', stale);
  }
}

// ---------- drawing helpers ----------

function chart(id, theme) {
  let c = charts.get(id);
  if (!c) {
    const el = document.getElementById(id);
    if (!el || el.clientWidth === 0) return null;
    c = echarts.init(el, theme, { renderer: 'canvas' });
    charts.set(id, c);
  }
  return c;
}

function setText(root, selector, text) {
  for (const el of root.querySelectorAll(selector)) el.textContent = text;
}

/** A tile: its value and, when given, its change against the period before (环比) and a year earlier (同比). */
function tile(name, value, change) {
  for (const el of document.querySelectorAll(`[data-tile="${name}"]`)) {
    el.querySelector('.value').textContent = value;
    el.querySelector('.change').textContent = change ?? '';
  }
}

function arrow(diff, unit) {
  if (!Number.isFinite(diff)) return '–';
  const sign = diff > 0 ? '▲' : diff < 0 ? '▼' : '＝';
  return `${sign}${Math.abs(diff).toFixed(1)}${unit}`;
}

/** Change of a count, in percent of the earlier one. */
function countChange(now, before, lastYear) {
  const rel = (b) => (b > 0 ? ((now - b) / b) * 100 : NaN);
  return `${T('cockpit.mom')} ${arrow(rel(before), '%')}  ${T('cockpit.yoy')} ${arrow(rel(lastYear), '%')}`;
}

/** Change of today's count so far against the same hours of yesterday and of a year earlier. */
function dayChange(spans, count) {
  return countChange(spans.today[count], spans.yesterday[count], spans.last_year[count]);
}

/** Change of a rate, in percentage points. */
function rateChange(now, before, lastYear) {
  return `${T('cockpit.mom')} ${arrow(now - before, 'pt')}  ${T('cockpit.yoy')} ${arrow(now - lastYear, 'pt')}`;
}

function table(name, head, rows) {
  for (const el of document.querySelectorAll(`[data-table="${name}"]`)) {
    el.replaceChildren();
    const thead = el.createTHead().insertRow();
    for (const h of head) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = h;
      thead.appendChild(th);
    }
    const body = el.createTBody();
    if (rows.length === 0) {
      const td = body.insertRow().insertCell();
      td.colSpan = head.length;
      td.textContent = T('cockpit.none');
    }
    for (const r of rows) {
      const tr = body.insertRow();
      for (const cell of r.cells) {
        // A cell is a text, a text with a smaller line under it ([text, small]) or a badge ({ text, className }).
        const td = tr.insertCell();
        if (cell && typeof cell === 'object' && !Array.isArray(cell)) {
          const badge = document.createElement('span');
          badge.className = cell.className;
          badge.textContent = cell.text;
          td.append(badge);
        } else if (Array.isArray(cell)) {
          const sub = document.createElement('small');
          sub.textContent = cell[1];
          td.append(cell[0], document.createElement('br'), sub);
        } else {
          td.textContent = cell;
        }
      }
      if (r.className) tr.className = r.className;
    }
  }
}

function bars(id, theme, names, series, horizontal = false) {
  const c = chart(id, theme);
  if (!c) return;
  const cat = { type: 'category', data: names, axisLabel: { interval: 0, fontSize: 15 } };
  // Few, non-overlapping value labels: the panels are narrow and read from across the room.
  const val = { type: 'value', splitNumber: horizontal ? 3 : 5, axisLabel: { hideOverlap: true } };
  // A series on axis 1 is a rate, on its own 0–100 % axis at the right.
  const rate = { type: 'value', min: 0, max: 100, axisLabel: { formatter: '{value}%' }, splitLine: { show: false } };
  const twoAxes = series.some((s) => s.yAxisIndex === 1);
  c.setOption({
    tooltip: { trigger: 'axis' },
    legend: series.length > 1 ? { top: 0 } : undefined,
    grid: { left: horizontal ? 150 : 50, right: twoAxes ? 56 : 24, top: series.length > 1 ? 36 : 12, bottom: horizontal ? 24 : 60 },
    xAxis: horizontal ? val : { ...cat, axisLabel: { ...cat.axisLabel, rotate: names.length > 8 ? 40 : 0 } },
    yAxis: horizontal ? { ...cat, inverse: true } : twoAxes ? [val, rate] : val,
    series: series.map((s) => ({ type: s.type ?? 'bar', barMaxWidth: 26, smooth: true, ...s })),
  }, true);
}

// ---------- the map ----------

/** Region colour: none open, open, overdue — strength by count. */
function areaColour(load) {
  if (!load || load.open === 0) return '#17304d';
  if (load.overdue > 0) return load.overdue >= 3 ? '#d8453b' : '#f08a3c';
  return load.open >= 10 ? '#2f7fd0' : load.open >= 3 ? '#2767a8' : '#22507f';
}

function densityColour(perThousand, max) {
  const t = max > 0 ? Math.min(1, perThousand / max) : 0;
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(23, 86)}, ${mix(60, 212)}, ${mix(77, 160)})`;
}

function mapName(level) {
  if (level.length === 0) return 'town';
  const name = level.length === 1 ? `ws:${level[0]}` : `grid:${level[1]}`;
  if (!state.maps.has(name)) {
    const features = state.geo.features.filter((f) =>
      level.length === 1 ? f.properties.community === level[0] : f.properties.code === level[1]);
    echarts.registerMap(name, { type: 'FeatureCollection', features });
    state.maps.add(name);
  }
  return name;
}

function crumbs(which) {
  const level = state.drill[which];
  for (const nav of document.querySelectorAll(`[data-crumbs="${which}"]`)) {
    nav.replaceChildren();
    const steps = [[T('cockpit.map.town'), []]];
    if (level[0]) steps.push([wsInfo.get(level[0])?.name ?? level[0], [level[0]]]);
    if (level[1]) steps.push([gridInfo.get(level[1])?.name ?? level[1], level]);
    steps.forEach(([label, target], i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.disabled = i === steps.length - 1;
      b.addEventListener('click', () => {
        state.drill[which] = target;
        drawScreen(state.screen);
      });
      nav.appendChild(b);
    });
  }
}

/** Whether a point in `grid` is inside the map's drill-down `level`. */
function inLevel(level, grid) {
  return level.length === 0 ? true : level.length === 1 ? gridInfo.get(grid)?.community === level[0] : grid === level[1];
}

/** The open cases on the safety map: open, overdue, and those that just changed flashing. */
function caseSeries(level) {
  const points = (state.situation?.points ?? []).filter((p) => inLevel(level, p.grid));
  const now = Date.now();
  const flashing = points.filter((p) => now - (state.flashes.get(p.id) ?? 0) < FLASH_FOR);
  const cut = state.situation?.truncated;
  setText(document, '[data-truncated]', cut ? T('cockpit.truncated', { n: number.format(points.length) }) : '');
  return [
    { name: 'open', type: 'scatter', coordinateSystem: 'geo', large: true, symbolSize: 5, itemStyle: { color: '#7fd3ff' },
      data: points.filter((p) => !p.overdue).map((p) => [p.lon, p.lat, p.id]) },
    { name: 'overdue', type: 'scatter', coordinateSystem: 'geo', large: true, symbolSize: 6, itemStyle: { color: '#ff5a4e' },
      data: points.filter((p) => p.overdue).map((p) => [p.lon, p.lat, p.id]) },
    { name: 'new', type: 'effectScatter', coordinateSystem: 'geo', symbolSize: 14, rippleEffect: { scale: 4, brushType: 'stroke' },
      itemStyle: { color: '#ffe45c' }, data: flashing.map((p) => [p.lon, p.lat, p.id]) },
  ];
}

function drawMap(which, theme, regionColour, tooltip, series = []) {
  const c = chart(`map-${which}`, theme);
  if (!c || !state.geo) return;
  const level = state.drill[which];
  const name = mapName(level);
  const regions = state.geo.features
    .filter((f) => name === 'town' || (level.length === 1 ? f.properties.community === level[0] : f.properties.code === level[1]))
    .map((f) => ({ name: f.properties.code, itemStyle: { areaColor: regionColour(f.properties) } }));
  c.setOption({
    tooltip: { trigger: 'item' },
    geo: {
      tooltip: { show: true, formatter: tooltip },
      map: name,
      nameProperty: 'code',
      roam: false,
      layoutCenter: ['50%', '50%'],
      layoutSize: '96%',
      itemStyle: { borderColor: '#5a7aa0', borderWidth: 0.8 },
      emphasis: { itemStyle: { areaColor: '#3c6da3' }, label: { show: false } },
      select: { disabled: true },
      regions,
    },
    series,
  }, { replaceMerge: ['geo', 'series'] });
  if (!c.__drill) {
    c.__drill = true;
    c.on('click', (params) => {
      if (params.componentType !== 'geo') return;
      const info = gridInfo.get(params.name);
      if (!info) return;
      const at = state.drill[which];
      state.drill[which] = at.length === 0 ? [info.community] : [info.community, info.code];
      drawScreen(state.screen);
    });
  }
  crumbs(which);
}

// ---------- the screens ----------

function loadOf(list, code) {
  return list?.find((l) => l.code === code);
}

function drawSafety() {
  const s = state.situation;
  if (s) {
    tile('open', number.format(s.town.open));
    tile('overdue', number.format(s.town.overdue));
    tile('escalated', number.format(s.town.escalated));
    tile('parked', number.format(s.by_state.parked ?? 0));
    tile('components', number.format(s.components));
    const states = Object.entries(s.by_state).sort((a, b) => b[1] - a[1]);
    bars('chart-states', 'safety', states.map(([k]) => T(`state.${k}`)), [{ data: states.map(([, v]) => v) }], true);
    const grids = new Map(s.grids.map((g) => [g.code, g]));
    const wss = new Map(s.workstations.map((w) => [w.code, w]));
    drawMap('safety', 'safety', (p) => areaColour(grids.get(p.code)), (params) => {
      const g = grids.get(params.name);
      const info = gridInfo.get(params.name);
      const ws = info && wss.get(info.community);
      if (!g) return '';
      return `${info.name}<br>${T('cockpit.col.open')} ${g.open} · ${T('cockpit.col.overdue')} ${g.overdue}` +
        (ws ? `<br>${ws.name}: ${ws.open} / ${ws.overdue}` : '');
    }, caseSeries(state.drill.safety));
    table('departments-load', [T('cockpit.col.name'), T('cockpit.col.open'), T('cockpit.col.overdue'), T('cockpit.escalated')],
      s.departments.slice(0, 12).map((d) => ({ cells: [d.name, number.format(d.open), number.format(d.overdue), number.format(d.escalated)],
        className: d.overdue > 0 ? 'warn' : '' })));
    table('overdue', [T('cockpit.col.case'), T('cockpit.col.dept'), T('cockpit.col.due'), T('cockpit.col.level')],
      s.most_overdue.map((c) => ({ cells: [[`${c.matter} · ${c.grid}`, c.number], c.department ?? '–',
        new Date(c.due_at).toLocaleString(page.lang, { hour12: false, timeZone: 'Asia/Shanghai', month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' }),
        c.escalation_level > 0 ? `${c.escalation_level}` : '–'], className: 'late' })));
    if (!state.tickerFilled) {
      state.tickerFilled = true;
      for (const t of [...s.ticker].reverse()) pushTick(t, false);
    }
  }
  if (state.sensing) tile('alarms_active_s', number.format(alarmTotal(state.sensing).active));
  const f = state.figures;
  if (f) {
    tile('today_reported', number.format(f.day.counts.reported), dayChange(f.day_spans, 'reported'));
    tile('today_closed', number.format(f.day.counts.closed), dayChange(f.day_spans, 'closed'));
    tile('month_on_time', pct(f.month.rates.on_time_closure), rateChange(f.month.rates.on_time_closure, f.month_before.on_time_closure, f.month_last_year.on_time_closure));
    tile('month_satisfaction', pct(f.month.rates.satisfaction), rateChange(f.month.rates.satisfaction, f.month_before.satisfaction, f.month_last_year.satisfaction));
    const classes = f.classes.slice(0, 8);
    bars('chart-classes-safety', 'safety', classes.map((c) => c.name), [{ data: classes.map((c) => c.counts.reported) }], true);
  }
}

function drawEconomy() {
  const f = state.figures;
  if (!f) return;
  const m = f.month;
  tile('month_reported', number.format(m.counts.reported), countChange(m.counts.reported, m.previous.reported, m.last_year.reported));
  tile('month_closed', number.format(m.counts.closed), countChange(m.counts.closed, m.previous.closed, m.last_year.closed));
  tile('month_on_time_e', pct(m.rates.on_time_closure), rateChange(m.rates.on_time_closure, f.month_before.on_time_closure, f.month_last_year.on_time_closure));
  tile('month_hours', `${m.rates.mean_close_hours.toFixed(1)} ${T('cockpit.hours')}`,
    `${T('cockpit.mom')} ${arrow(m.rates.mean_close_hours - f.month_before.mean_close_hours, T('cockpit.hours'))}  ${T('cockpit.yoy')} ${arrow(m.rates.mean_close_hours - f.month_last_year.mean_close_hours, T('cockpit.hours'))}`);
  bars('chart-months', 'economy', f.months.map((p) => p.period), [
    { name: T('cockpit.series.reported'), data: f.months.map((p) => p.reported) },
    { name: T('cockpit.series.reported_ly'), data: f.months.map((p) => p.reported_last_year) },
    { name: T('cockpit.series.closed'), type: 'line', data: f.months.map((p) => p.closed) },
  ]);
  const classes = f.classes.slice(0, 10);
  bars('chart-classes', 'economy', classes.map((c) => c.name), [{ data: classes.map((c) => c.counts.reported) }], true);
  pie('chart-sources', 'economy', f.sources);
  table('departments', [T('cockpit.col.name'), T('cockpit.col.dispatched'), T('cockpit.col.closed'), T('cockpit.on_time_closure'), T('cockpit.col.score'), T('cockpit.col.grade')],
    f.departments.map((d) => ({ cells: [d.name, number.format(d.counts.dispatched), number.format(d.counts.closed), pct(d.rates.on_time_closure), d.rates.score.toFixed(1), d.rates.grade],
      className: `grade-${d.rates.grade}` })));
}

function pie(id, theme, sources) {
  const c = chart(id, theme);
  if (!c) return;
  c.setOption({
    tooltip: { trigger: 'item', formatter: '{b}: {c} ({d}%)' },
    series: [{ type: 'pie', radius: ['38%', '68%'], label: { color: '#dce7f3', fontSize: 16, formatter: '{b}\n{d}%' },
      data: sources.filter((s) => s.counts.reported > 0).map((s) => ({ name: T(`source.${s.key}`), value: s.counts.reported })) }],
  }, true);
}

function drawRural() {
  const s = state.situation;
  const f = state.figures;
  // Households per workstation, from the grids' own figures.
  const households = new Map();
  for (const g of gridInfo.values()) households.set(g.community, (households.get(g.community) ?? 0) + g.households);
  if (s) {
    const density = s.workstations.map((w) => ({ ...w, per: households.get(w.code) ? (1000 * w.open) / households.get(w.code) : 0 }))
      .sort((a, b) => b.per - a.per);
    const max = density.reduce((m, w) => Math.max(m, w.per), 0);
    const byWs = new Map(density.map((w) => [w.code, w]));
    const grids = new Map(s.grids.map((g) => [g.code, g]));
    drawMap('rural', 'rural', (p) => (state.drill.rural.length === 0
      ? densityColour(byWs.get(p.community)?.per ?? 0, max)
      : areaColour(grids.get(p.code))), (params) => {
      const info = gridInfo.get(params.name);
      const w = info && byWs.get(info.community);
      return w ? `${w.name} (${T(`cockpit.${wsInfo.get(w.code)?.kind ?? 'community'}`)})<br>${w.per.toFixed(2)} ‰ · ${T('cockpit.col.open')} ${w.open}<br>${info.name}` : '';
    });
    const top = density.slice(0, 14);
    bars('chart-density', 'rural', top.map((w) => w.name), [{
      data: top.map((w) => ({ value: Number(w.per.toFixed(2)), itemStyle: { color: wsInfo.get(w.code)?.kind === 'village' ? '#56d4a0' : '#ffc94a' } })),
    }], true);
  }
  if (f) {
    const kinds = ['village', 'community'];
    const sum = (kind, pick) => f.workstations.filter((w) => wsInfo.get(w.key)?.kind === kind).reduce((n, w) => n + pick(w), 0);
    const rate = (kind, num, den) => { const d = sum(kind, den); return d > 0 ? (100 * sum(kind, num)) / d : 0; };
    const per = (kind) => {
      const hh = [...households.entries()].filter(([code]) => wsInfo.get(code)?.kind === kind).reduce((n, [, v]) => n + v, 0);
      // Per 100 households, so it sits on the same 0–100 scale as the two rates beside it.
      return hh > 0 ? (100 * sum(kind, (w) => w.counts.reported)) / hh : 0;
    };
    const c = chart('chart-compare', 'rural');
    if (c) {
      c.setOption({
        tooltip: { trigger: 'axis' },
        legend: { top: 0 },
        grid: { left: 50, right: 20, top: 40, bottom: 40 },
        xAxis: { type: 'category', data: [T('cockpit.on_time_closure'), T('cockpit.satisfaction'), T('cockpit.per_hundred')] },
        yAxis: { type: 'value' },
        series: kinds.map((k) => ({
          name: T(`cockpit.${k}`), type: 'bar', barMaxWidth: 40,
          data: [rate(k, (w) => w.counts.closed_on_time, (w) => w.counts.closed), rate(k, (w) => w.counts.satisfied, (w) => w.counts.rated), per(k)]
            .map((v) => Number(v.toFixed(1))),
        })),
      }, true);
    }
    table('workstations', [T('cockpit.col.name'), T('cockpit.col.kind'), T('cockpit.col.reported'), T('cockpit.on_time_closure'), T('cockpit.col.score'), T('cockpit.col.grade')],
      f.workstations.slice(0, 14).map((w) => ({ cells: [w.name, T(`cockpit.${wsInfo.get(w.key)?.kind ?? 'community'}`), number.format(w.counts.reported), pct(w.rates.on_time_closure), w.rates.score.toFixed(1), w.rates.grade],
        className: `grade-${w.rates.grade}` })));
  }
}

function drawLivelihood() {
  const f = state.figures;
  if (!f) return;
  const m = f.month;
  tile('month_satisfaction_l', pct(m.rates.satisfaction), rateChange(m.rates.satisfaction, f.month_before.satisfaction, f.month_last_year.satisfaction));
  tile('month_rated', number.format(m.counts.rated), countChange(m.counts.rated, m.previous.rated, m.last_year.rated));
  const total = f.sources.reduce((n, s) => n + s.counts.reported, 0);
  const pub = f.sources.filter((s) => PUBLIC_SOURCES.includes(s.key)).reduce((n, s) => n + s.counts.reported, 0);
  tile('public_share', pct(total > 0 ? (100 * pub) / total : 0));
  tile('today_reported_l', number.format(f.day.counts.reported), dayChange(f.day_spans, 'reported'));
  bars('chart-days', 'livelihood', f.days.map((p) => p.period.slice(5)), [
    { name: T('cockpit.series.reported'), data: f.days.map((p) => p.reported) },
    { name: T('cockpit.series.closed'), data: f.days.map((p) => p.closed) },
    { name: T('cockpit.satisfaction'), type: 'line', yAxisIndex: 1, data: f.days.map((p) => (p.rated > 0 ? Number(((100 * p.satisfied) / p.rated).toFixed(1)) : null)) },
  ]);
  const pubs = f.sources.slice().sort((a, b) => b.counts.reported - a.counts.reported);
  bars('chart-sources-l', 'livelihood', pubs.map((s) => T(`source.${s.key}`)), [{ data: pubs.map((s) => s.counts.reported) }], true);
  const bySat = f.departments.filter((d) => d.counts.rated > 0).sort((a, b) => b.rates.satisfaction - a.rates.satisfaction);
  table('satisfaction', [T('cockpit.col.name'), T('cockpit.rated'), T('cockpit.satisfaction'), T('cockpit.col.grade')],
    bySat.map((d) => ({ cells: [d.name, number.format(d.counts.rated), pct(d.rates.satisfaction), d.rates.grade], className: `grade-${d.rates.grade}` })));
}

// ---------- 物联感知: the smart components ----------

/** The town's open alarms in all (the tally without a severity). */
function alarmTotal(x) {
  return x.severities.find((r) => r.severity == null) ?? { active: 0, unacknowledged: 0, cleared: 0 };
}

const clockTime = (at) => new Date(at).toLocaleTimeString(page.lang, { hour12: false, timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit' });

function alarmState(a) {
  const parts = [T(a.active ? (a.acknowledged ? 'cockpit.alarm.acked' : 'cockpit.alarm.unacked') : 'cockpit.alarm.cleared')];
  if (a.suppressed) parts.push(T('cockpit.alarm.held'));
  if (a.case_id) parts.push(T('cockpit.alarm.case', { id: a.case_id }));
  return [parts[0], parts.slice(1).join(' · ')];
}

/** A checkpoint's colour: over its crowd threshold red, above 80 % of it amber, else green. */
function fullness(c) {
  return c.occupancy > c.max ? '#ff3b30' : c.occupancy > 0.8 * c.max ? '#ff9f0a' : '#56d4a0';
}

function drawSensing() {
  const x = state.sensing;
  if (!x) return;
  const all = alarmTotal(x);
  const critical = x.severities.find((r) => r.severity === 'critical') ?? { active: 0 };
  const devices = x.devices.reduce((n, d) => ({ total: n.total + d.total, offline: n.offline + d.offline }), { total: 0, offline: 0 });
  const crowded = x.checkpoints.filter((c) => c.occupancy > c.max).length;
  tile('alarms_active', number.format(all.active));
  tile('alarms_unacked', number.format(all.unacknowledged));
  tile('alarms_critical', number.format(critical.active));
  tile('crowded', `${number.format(crowded)} / ${number.format(x.checkpoints.length)}`);
  tile('devices_online', pct(devices.total > 0 ? (100 * (devices.total - devices.offline)) / devices.total : 100));
  tile('devices_offline', number.format(devices.offline));

  const faults = x.faults;
  bars('chart-faults', 'sensing', faults.map((f) => T(`fault.${f.fault}`)), [
    { name: T('cockpit.series.with_case'), stack: 'a', data: faults.map((f) => f.with_case), itemStyle: { color: '#3fa7ff' } },
    { name: T('cockpit.series.no_case'), stack: 'a', data: faults.map((f) => f.active - f.with_case), itemStyle: { color: '#ff9f0a' } },
  ], true);
  const kinds = x.devices;
  const healthy = (d) => d.total - d.offline - d.unwell - d.faulty;
  bars('chart-devices', 'sensing', kinds.map((d) => T(`device.kind.${d.kind}`)), [
    { name: T('cockpit.series.healthy'), stack: 'd', data: kinds.map(healthy), itemStyle: { color: '#56d4a0' } },
    { name: T('cockpit.series.faulty'), stack: 'd', data: kinds.map((d) => d.faulty), itemStyle: { color: '#ff9f0a' } },
    { name: T('cockpit.series.unwell'), stack: 'd', data: kinds.map((d) => d.unwell), itemStyle: { color: '#c6a7ff' } },
    { name: T('cockpit.series.offline'), stack: 'd', data: kinds.map((d) => d.offline), itemStyle: { color: '#ff3b30' } },
  ], true);

  // The map: grids tinted by their active alarms, each alarm a point coloured by severity; the
  // unacknowledged critical ones ripple.
  const level = state.drill.sensing;
  const points = x.points.filter((p) => inLevel(level, p.grid));
  const perGrid = new Map();
  for (const p of x.points) perGrid.set(p.grid, (perGrid.get(p.grid) ?? 0) + 1);
  const item = (p) => ({ value: [p.lon, p.lat], name: p.subject, alarm: p });
  const series = Object.keys(SEVERITY_COLOUR).reverse().map((sev) => ({
    name: sev, type: 'scatter', coordinateSystem: 'geo', symbolSize: SEVERITY_SIZE[sev],
    itemStyle: { color: SEVERITY_COLOUR[sev], borderColor: '#07111f', borderWidth: 1 },
    data: points.filter((p) => p.severity === sev).map(item),
  }));
  series.push({ name: 'unacked-critical', type: 'effectScatter', coordinateSystem: 'geo', symbolSize: SEVERITY_SIZE.critical,
    rippleEffect: { scale: 3, brushType: 'stroke' }, itemStyle: { color: SEVERITY_COLOUR.critical },
    data: points.filter((p) => p.severity === 'critical' && !p.acknowledged).map(item) });
  for (const s of series) {
    s.tooltip = { formatter: (params) => { const a = params.data.alarm;
      return `${T(`severity.${a.severity}`)} · ${T(`fault.${a.fault}`)}<br>${a.subject}<br>${clockTime(a.last_raised_at)} · ${alarmState(a).filter(Boolean).join(' · ')}`; } };
  }
  // The checkpoints where people are counted: a diamond each, coloured by how full the area is, with
  // its name; a crowd alarm's point sits on it.
  const placed = x.checkpoints.filter((c) => c.location && inLevel(level, c.grid));
  document.getElementById('map-sensing').dataset.checkpoints = String(placed.length);
  series.push({ name: 'checkpoints', type: 'scatter', coordinateSystem: 'geo', symbol: 'diamond', symbolSize: 18, z: 1,
    data: placed.map((c) => ({
      value: [c.location.lon, c.location.lat], name: c.checkpoint, checkpoint: c,
      itemStyle: { color: fullness(c), borderColor: '#07111f', borderWidth: 1 } })),
    label: { show: true, position: 'right', formatter: (params) => params.name, color: '#dce7f3', fontSize: 14 },
    tooltip: { formatter: (params) => { const c = params.data.checkpoint;
      return `${c.checkpoint}<br>${T('cockpit.series.present')} ${number.format(c.occupancy)} / ${number.format(c.max)}`; } } });
  drawMap('sensing', 'sensing', (p) => {
    const n = perGrid.get(p.code) ?? 0;
    return n === 0 ? '#17304d' : n >= 3 ? '#3a3f6b' : '#283c63';
  }, (params) => {
    const info = gridInfo.get(params.name);
    return info ? `${info.name}<br>${T('cockpit.alarms_active')} ${perGrid.get(params.name) ?? 0}` : '';
  }, series);
  setText(document, '[data-alarms-truncated]', x.truncated ? T('cockpit.alarm.truncated', { n: number.format(x.points.length) }) : '');

  table('first-alarms', [T('cockpit.col.severity'), T('cockpit.col.alarm'), T('cockpit.col.last'), T('cockpit.col.state')],
    x.first.map((a) => ({
      cells: [{ text: T(`severity.${a.severity}`), className: `sev ${a.severity}` }, [T(`fault.${a.fault}`), a.subject],
        [clockTime(a.last_raised_at), a.count > 1 ? T('cockpit.alarm.count', { n: a.count }) : ''], alarmState(a)],
      className: !a.active ? 'cleared' : a.acknowledged ? '' : 'unacked',
    })));

  // People present against each checkpoint's threshold, and the town's flow per five minutes.
  const cps = x.checkpoints.slice().sort((a, b) => b.occupancy / b.max - a.occupancy / a.max);
  const occ = chart('chart-occupancy', 'sensing');
  if (occ) {
    occ.setOption({
      tooltip: { trigger: 'axis' },
      grid: { left: 110, right: 30, top: 30, bottom: 24 },
      legend: { top: 0 },
      xAxis: { type: 'value', splitNumber: 3, axisLabel: { hideOverlap: true } },
      yAxis: { type: 'category', inverse: true, data: cps.map((c) => c.checkpoint), axisLabel: { interval: 0, fontSize: 15 } },
      series: [
        { name: T('cockpit.series.present'), type: 'bar', barMaxWidth: 22,
          data: cps.map((c) => ({ value: c.occupancy, itemStyle: { color: fullness(c) } })) },
        { name: T('cockpit.series.threshold'), type: 'scatter', symbol: 'rect', symbolSize: [4, 24], itemStyle: { color: '#dce7f3' },
          data: cps.map((c) => c.max) },
      ],
    }, true);
  }
  const spans = new Map();
  for (const c of x.checkpoints) {
    for (const f of c.flow) {
      const s = spans.get(f.start) ?? { in: 0, out: 0 };
      s.in += f.count_in;
      s.out += f.count_out;
      spans.set(f.start, s);
    }
  }
  const times = [...spans.keys()].sort();
  const flow = chart('chart-flow', 'sensing');
  if (flow) {
    const line = (key, name, colour) => ({ name, type: 'line', smooth: true, showSymbol: false, areaStyle: { opacity: 0.2 },
      itemStyle: { color: colour }, data: times.map((t) => spans.get(t)[key]) });
    flow.setOption({
      tooltip: { trigger: 'axis' },
      legend: { top: 0 },
      grid: { left: 56, right: 24, top: 36, bottom: 30 },
      xAxis: { type: 'category', boundaryGap: false, data: times.map(clockTime), axisLabel: { hideOverlap: true } },
      yAxis: { type: 'value', splitNumber: 3 },
      series: [line('in', T('cockpit.series.in'), '#56d4a0'), line('out', T('cockpit.series.out'), '#3fa7ff')],
    }, true);
  }
}

const DRAW = { safety: drawSafety, economy: drawEconomy, rural: drawRural, livelihood: drawLivelihood, sensing: drawSensing };

function drawScreen(screen) {
  if (!state.geo) return;
  DRAW[screen]?.();
  tickAges();
}

// ---------- the ticker ----------

function pushTick(t, fresh) {
  const list = document.getElementById('ticker');
  if (!list || list.querySelector(`[data-seq="${t.seq}"]`)) return;
  const li = document.createElement('li');
  li.dataset.seq = t.seq;
  li.dataset.case = t.case_id;
  if (fresh) li.className = 'fresh';
  const time = document.createElement('time');
  time.textContent = new Date(t.at).toLocaleTimeString(page.lang, { hour12: false, timeZone: 'Asia/Shanghai' });
  const what = document.createElement('span');
  what.textContent = `${t.number} ${T(`action.${t.action}`)} → ${T(`state.${t.to}`)}`;
  const where = document.createElement('span');
  where.className = 'where';
  where.textContent = t.grid;
  li.append(time, what, where);
  list.prepend(li);
  while (list.children.length > TICKER_ROWS) list.lastElementChild.remove();
}

// ---------- start ----------

async function start() {
  document.body.classList.add(`view-${page.view}`);
  for (const tab of document.querySelectorAll('[role=tab]')) tab.addEventListener('click', () => show(tab.dataset.screen));
  const rotate = document.getElementById('rotate');
  rotate.addEventListener('change', () => setRotation(rotate.checked));
  window.addEventListener('resize', () => charts.forEach((c) => c.resize()));
  tickAges();
  const [geo, situation, figures, sensing] = await Promise.all([
    read('/api/v1/grids.geojson'),
    read('/api/v1/cockpit/situation'),
    read('/api/v1/cockpit/figures'),
    read('/api/v1/cockpit/sensing'),
    document.fonts.load(`400 16px 'Noto Sans SC'`, '平安'),
    document.fonts.load(`700 16px 'Noto Sans SC'`, '平安'),
  ]);
  state.geo = geo;
  for (const f of geo.features) gridInfo.set(f.properties.code, { code: f.properties.code, name: f.properties.name_zh, community: f.properties.community, households: f.properties.households });
  echarts.registerMap('town', geo);
  state.maps.add('town');
  Object.assign(state, { situation, figures, sensing });
  state.at.situation = state.at.figures = state.at.sensing = lastSituation = Date.now();
  show(page.screen);
  document.body.dataset.ready = 'yes';
  connect(situation.seq);
  setRotation(page.rotate);
  setInterval(tickAges, 1000);
  setInterval(refreshSituation, SITUATION_EVERY);
  setInterval(() => refresh('figures'), FIGURES_EVERY);
  setInterval(() => refresh('sensing'), SENSING_EVERY);
  // New events stop flashing after a while, without waiting for the next read.
  setInterval(() => {
    const before = state.flashes.size;
    for (const [id, at] of state.flashes) if (Date.now() - at > FLASH_FOR) state.flashes.delete(id);
    if (before > 0 && state.screen === 'safety') drawScreen('safety');
  }, 5000);
}

start().catch((e) => {
  console.error('cockpit', e);
  document.body.dataset.ready = 'failed';
});
