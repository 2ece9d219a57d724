// Open a built chapter page in headless Chromium, open its launch menu (the rocket) as a reader would,
// and check that it offers Binder, Colab and Live Code, the first two pointing at the chapter's launch
// notebook (chapters/X.ipynb) of the repository in _config.yml. Usage (see `make check-launch`):
//   node tools/check_launch_buttons.js _build/html/chapters/02_poisoning.html REPO_URL [screenshot.png]
const path = require("path");
const { chromium } = require("playwright-core");

(async () => {
  const file = path.resolve(process.argv[2]);
  const repo = process.argv[3].replace(/\/$/, "").replace("https://github.com/", "");
  const notebook = "chapters/" + path.basename(file, ".html") + ".ipynb";
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 700 } });
  await page.goto("file://" + file);
  await page.locator(".dropdown-launch-buttons button").first().click();
  await page.waitForTimeout(500);
  const items = await page.evaluate(() =>
    [...document.querySelectorAll(".dropdown-launch-buttons .dropdown-item")].map((e) => ({
      text: e.textContent.trim(), href: e.getAttribute("href") || "", visible: e.offsetParent !== null })));
  if (process.argv[4]) await page.screenshot({ path: process.argv[4], clip: { x: 600, y: 0, width: 680, height: 300 } });
  await browser.close();
  for (const i of items) console.log(`${i.visible ? "shown " : "HIDDEN"}  ${i.text.padEnd(10)} ${i.href}`);
  const want = {
    Binder: `https://mybinder.org/v2/gh/${repo}/main?urlpath=lab/tree/${notebook}`,
    Colab: `https://colab.research.google.com/github/${repo}/blob/main/${notebook}`,
  };
  const problems = [];
  for (const [name, href] of Object.entries(want)) {
    const item = items.find((i) => i.text === name);
    if (!item || item.href !== href || !item.visible) problems.push(`${name} should be shown and link to ${href}`);
  }
  const live = items.find((i) => i.text.toLowerCase().includes("live code"));
  if (!live || !live.visible) problems.push("a Live Code button should be shown");
  if (problems.length) {
    console.error("FAILED:\n  " + problems.join("\n  "));
    process.exit(1);
  }
  console.log("OK: the launch menu offers Binder, Colab and Live Code for " + notebook);
})();
