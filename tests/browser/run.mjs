// Headless Chromium against syncws pages; driven by cli/tests/browser.rs.
//
//   node run.mjs chat URL [SCREENSHOT.png]
//     Two pages in room "alpha", one in "beta": each alpha page sees both
//     alpha messages, the beta page sees neither (and alpha sees none of
//     beta's). Prints "ready" and then waits for the server to go away
//     (the test stops it), printing "closed CODE CODE CODE": the close
//     codes the three pages displayed.
//   node run.mjs echo URL
//     examples/http_and_ws: the page's WebSocket round trip; prints
//     "echoed TEXT".
//
// Any failure: a message on stderr and exit status 1. Chromium or
// playwright-core missing: exit status 2 (run .ci/run's install step).
import { existsSync } from "node:fs";

const INSTALL = "install them with .ci/run's step \"chromium and playwright-core for the browser tests\" " +
  "(apt-get install -y chromium; npm ci --prefix tests/browser)";
const CHROMIUM = process.env.SYNCWS_CHROMIUM || "/usr/bin/chromium";
if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} not found: ${INSTALL}`);
  process.exit(2);
}
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  console.error(`playwright-core not found (${e.message}): ${INSTALL}`);
  process.exit(2);
}

// Generous: the machine running the tests may be slow and busy.
const TIMEOUT = 60_000;

const [mode, url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  timeout: TIMEOUT,
  // The background services try the network; a closed network refuses them
  // and, without these, can disturb the browser's own connections.
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

const errors = [];
async function open(context, address) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => errors.push(`${address}: ${e.message}`));
  await page.goto(address);
  return page;
}

function check() {
  if (errors.length) throw new Error(`errors in the page: ${errors.join("; ")}`);
}

/** Waits until the #log of `page` has a line ending with `text`. */
async function sees(page, text) {
  await page.locator("#log div", { hasText: text }).first().waitFor();
}

async function lines(page) {
  return page.locator("#log div").allTextContents();
}

async function say(page, text) {
  await page.fill("#line", text);
  await page.press("#line", "Enter");
}

async function chat() {
  const context = await browser.newContext({ viewport: { width: 760, height: 640 } });
  const a1 = await open(context, `${url}#alpha`);
  const a2 = await open(context, `${url}#alpha`);
  const b = await open(context, `${url}#beta`);
  for (const [page, room] of [[a1, "alpha"], [a2, "alpha"], [b, "beta"]]) {
    await page.locator("#state", { hasText: `connected to ${room}` }).waitFor();
  }
  await sees(a1, "joined alpha (2 here)");

  await say(a1, "hello from the first page");
  await sees(a2, ": hello from the first page");
  await say(a2, "and hello back from the second");
  for (const page of [a1, a2]) {
    await sees(page, ": hello from the first page");
    await sees(page, ": and hello back from the second");
  }
  if (screenshot) {
    // The second alpha page with the two greetings (docs/chat.png).
    await a2.screenshot({ path: screenshot, clip: { x: 40, y: 10, width: 680, height: 570 } });
  }
  // Beta's own line arrives after alpha's were delivered; alpha's would
  // have been queued before it had the hub sent them to beta.
  await say(b, "beta only");
  await sees(b, ": beta only");
  await say(a1, "last in alpha");
  await sees(a1, ": last in alpha");
  await sees(a2, ": last in alpha");
  const inB = await lines(b);
  if (inB.some((l) => l.includes("hello") || l.includes("alpha"))) {
    throw new Error(`the beta page saw alpha's messages: ${JSON.stringify(inB)}`);
  }
  for (const page of [a1, a2]) {
    const inA = await lines(page);
    if (inA.some((l) => l.includes("beta"))) throw new Error(`an alpha page saw beta's: ${JSON.stringify(inA)}`);
  }
  check();

  console.log("ready");
  const codes = [];
  for (const page of [a1, a2, b]) {
    const state = page.locator("#state", { hasText: "closed (" });
    await state.waitFor();
    const text = await state.textContent();
    const m = /closed \((\d+)/.exec(text);
    if (!m) throw new Error(`unexpected state ${JSON.stringify(text)}`);
    codes.push(m[1]);
  }
  check();
  console.log(`closed ${codes.join(" ")}`);
}

async function echo() {
  const context = await browser.newContext();
  const page = await open(context, url);
  const log = page.locator("#log");
  await page.waitForFunction(() => document.getElementById("log").textContent.includes("open\n"), null, {
    timeout: TIMEOUT,
  });
  const text = "round trip through syncws";
  await page.fill("#m", text);
  await page.press("#m", "Enter");
  await page.waitForFunction((t) => document.getElementById("log").textContent.includes(`< ${t}\n`), text, {
    timeout: TIMEOUT,
  });
  check();
  const all = await log.textContent();
  console.log(`echoed ${JSON.stringify(all.trim().split("\n"))}`);
}

try {
  if (mode === "chat") await chat();
  else if (mode === "echo") await echo();
  else throw new Error(`unknown mode ${mode}: chat URL [PNG] | echo URL`);
  await browser.close();
} catch (e) {
  console.error(`browser test failed: ${e.stack || e}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
