// Drive a built chapter page in headless Chromium the way a reader would: move the first frame
// player's slider, press its Play button, and check that the shown frame follows (widgets in the
// static book run without a kernel). Usage (see `make check-widgets`):
//   node tools/check_widgets.js _build/html/chapters/00_first_experiment.html [screenshot.png]
const path = require("path");
const { chromium } = require("playwright-core");

(async () => {
  const url = "file://" + path.resolve(process.argv[2]);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  await page.waitForSelector(".widget-play button", { timeout: 30000 });
  const caption = () => page.evaluate(() =>
    [...document.querySelectorAll(".widget-html-content")].map((e) => e.textContent).join(" | "));
  const first = await caption();
  const handle = page.locator(".widget-slider .noUi-handle").first();
  await handle.focus();
  await page.keyboard.press("ArrowRight");
  await page.waitForTimeout(300);
  const moved = await caption();
  await page.keyboard.press("Home");
  await page.waitForTimeout(300);
  await page.locator(".widget-play button").first().click();
  await page.waitForTimeout(1500);
  const played = await caption();
  if (process.argv[3]) await page.locator(".widget-vbox").first().screenshot({ path: process.argv[3] });
  await browser.close();
  console.log(`frame at start: ${first}\nafter the slider moved: ${moved}\nafter Play: ${played}`);
  const widgetErrors = errors.filter((e) => !e.includes("THEBE_JS_URL"));  // a theme quirk, unrelated
  if (moved === first || played === first || widgetErrors.length) {
    console.error("FAILED: the frames did not follow the controls", widgetErrors);
    process.exit(1);
  }
  console.log("OK: the widget works in the static page");
})();
