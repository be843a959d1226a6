// Opens the built book's results chapter in headless Chromium (Debian's), checks that every
// image loaded (complete, with a natural size), and keeps a screenshot as evidence.
// Usage: node scripts/book_browser.mjs BUILD_DIR SCREENSHOT.png
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(path.resolve(".tlab/node/package.json"));
const { chromium } = require("playwright-core");
const [build, shot] = process.argv.slice(2);
const pages = ["generated/results/report.html", "cli.html"];

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  for (const rel of pages) {
    const url = pathToFileURL(path.resolve(build, rel)).href;
    await page.goto(url, { waitUntil: "load" });
    const imgs = await page.$$eval("main img", (els) =>
      els.map((e) => ({ src: e.getAttribute("src"), ok: e.complete && e.naturalWidth > 0, w: e.naturalWidth })));
    const bad = imgs.filter((i) => !i.ok);
    console.log(`book_browser: ${rel}: ${imgs.length} images, ${bad.length} failed to load`);
    for (const b of bad) console.log(`  not loaded: ${b.src}`);
    if (bad.length > 0 || (rel.startsWith("generated/") && imgs.length < 4)) failed = true;
    if (rel === pages[0]) {
      // The evidence is a chart on screen, not the table above it.
      if (imgs.length > 0) await page.locator("main img").first().scrollIntoViewIfNeeded();
      await page.screenshot({ path: shot, fullPage: false });
      console.log(`book_browser: screenshot of ${rel} in ${shot}`);
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
