// Part of bench/bench_web.py: the overview's first render in chromium, from the navigation's
// start to the page's performance mark 'overview-rendered' (set once the module list from the
// event stream is on screen), over 5 loads. Prints {"renders": [ms, ...]}.
// Environment: CA_WEB_URL, CA_WEB_PASSWORD.
import { launch } from '../tests/browser/dashboard.mjs';

const url = process.env.CA_WEB_URL;
const { context, close } = await launch({ width: 1920, height: 1080 });
const page = context.pages()[0] || await context.newPage();
await page.goto(url);
await page.fill('#password', process.env.CA_WEB_PASSWORD);
await page.click('#submit');
await page.waitForURL(url);
const renders = [];
for (let i = 0; i < 6; i++) {
  await page.goto(url + '#/', { waitUntil: 'commit' });
  await page.reload();
  await page.waitForFunction(() => performance.getEntriesByName('overview-rendered').length > 0, null, { timeout: 20000 });
  const ms = await page.evaluate(() => performance.getEntriesByName('overview-rendered')[0].startTime);
  if (i > 0) renders.push(ms); // the first load fills the browser's caches
}
await close();
console.log(JSON.stringify({ renders }));
