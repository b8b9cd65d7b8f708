// End to end in headless Chromium: the compiled binary serves the test page and its bundle from its
// own embedded copy; two pages chat, and a page keeps its conversation across a server restart.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { freePort, type RunningBinary, startBinary } from "../helpers/binary";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const OUTPUT = join(import.meta.dir, "..", "..", "test-output");
const TIMEOUT = 10_000;
/** Chromium starts, two pages load and a server restarts within one test. */
setDefaultTimeout(45_000);

let port: number;
let cwd: string;
let profile: string;
let binary: RunningBinary;
let context: BrowserContext;
let alice: Page;
let bob: Page;

function serverEnv(instance: string, color: string) {
  return {
    PORT: String(port),
    INSTANCE_ID: instance,
    COLOR: color,
    LOG_LEVEL: "error",
    DRAIN_JITTER_MS: "500",
    DRAIN_TIMEOUT: "5000",
  };
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)`);
  mkdirSync(OUTPUT, { recursive: true });
  port = freePort();
  // An empty working directory: the page and bundle can only come from inside the binary.
  cwd = mkdtempSync(join(tmpdir(), "chat-e2e-cwd-"));
  profile = mkdtempSync(join(tmpdir(), "chat-e2e-profile-"));
  binary = await startBinary(serverEnv("e2e-blue", "blue"), { cwd });
  context = await chromium.launchPersistentContext(profile, {
    headless: true,
    executablePath: CHROMIUM,
    viewport: { width: 1100, height: 720 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

afterAll(async () => {
  await context?.close();
  await binary?.stop();
  for (const dir of [cwd, profile]) if (dir) rmSync(dir, { recursive: true, force: true });
});

async function openPage(user: string): Promise<Page> {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const failures: string[] = [];
  page.on("pageerror", (error) => failures.push(error.message));
  page.on("requestfailed", (request) => failures.push(`${request.url()} ${request.failure()?.errorText}`));
  // A 2 s reconnect ceiling: the restart test waits for the pages to come back, not for a 30 s backoff.
  await page.goto(`${binary.httpUrl}/?user=${user}&room=lobby&retryMaxMs=2000`);
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="open"]');
  expect(failures).toEqual([]);
  return page;
}

const message = (page: Page, text: string) => page.locator("#messages .msg", { hasText: text });

async function send(page: Page, text: string) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

describe("test page in Chromium", () => {
  test("the binary serves the page and its bundle from an empty working directory", async () => {
    const html = await fetch(`${binary.httpUrl}/`);
    expect(html.status).toBe(200);
    expect(await html.text()).toContain('src="/chat.js"');
    const bundle = await fetch(`${binary.httpUrl}/chat.js`);
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get("content-type")).toContain("javascript");
  });

  test("two pages chat in a room and by direct message", async () => {
    alice = await openPage("alice");
    bob = await openPage("bob");
    await alice.locator('#members li[data-user="bob"]').waitFor();
    await expect(alice.locator("#instance .name").textContent()).resolves.toContain("e2e-blue");

    await alice.locator("#text").pressSequentially("Hello Bob", { delay: 10 });
    await bob.locator("#typing", { hasText: "alice is typing" }).waitFor();
    await alice.press("#text", "Enter");
    await message(bob, "Hello Bob").waitFor();
    await expect(bob.locator("#typing").textContent()).resolves.toBe("");
    await expect(message(bob, "Hello Bob").locator("time").textContent()).resolves.toMatch(/\d{1,2}:\d{2}:\d{2}/);

    await send(bob, "Hi Alice, reading you");
    await message(alice, "Hi Alice, reading you").waitFor();
    // Bob's page has shown Alice's message: Alice sees the receipt under it.
    await message(alice, "Hello Bob").locator(".seen", { hasText: "Seen by bob" }).waitFor();

    await alice.click('#members li[data-user="bob"]');
    await expect(alice.locator("#title").textContent()).resolves.toBe("@ bob");
    await send(alice, "Just between us");
    await bob.locator('#directs li[data-key="dm:alice"]').click();
    await message(bob, "Just between us").waitFor();
    await message(alice, "Just between us").locator(".state").waitFor({ state: "detached" });

    await bob.locator('#rooms li[data-key="room:lobby"]').click();
    await alice.locator('#rooms li[data-key="room:lobby"]').click();
    await alice.screenshot({ path: join(OUTPUT, "e2e-room-alice.png") });
    await bob.screenshot({ path: join(OUTPUT, "e2e-room-bob.png") });
  });

  test("a page keeps its conversation across a server restart", async () => {
    const exited = binary.stop("SIGTERM");
    await alice.waitForSelector('#status[data-state="reconnecting"]');
    await alice.locator("#queue", { hasText: /restarting|retrying/ }).waitFor();
    expect(await exited).toBe(0);

    // Written while no server runs: it waits in the page, marked as sending.
    await send(alice, "Sent while the server was down");
    await message(alice, "Sent while the server was down").locator(".state", { hasText: "sending" }).waitFor();
    await alice.locator("#queue", { hasText: "1 waiting to be sent" }).waitFor();
    await alice.screenshot({ path: join(OUTPUT, "e2e-reconnecting.png") });

    binary = await startBinary(serverEnv("e2e-green", "green"), { cwd });
    for (const page of [alice, bob]) {
      await page.waitForSelector('#status[data-state="open"]', { timeout: 20_000 });
      await page.locator("#instance .name", { hasText: "e2e-green" }).waitFor();
    }
    await message(bob, "Sent while the server was down").waitFor();
    await message(alice, "Sent while the server was down")
      .locator(".state", { hasText: "sending" })
      .waitFor({ state: "detached" });
    // The counter follows the queue: nothing waits any more.
    await alice.locator("#queue").waitFor({ state: "hidden" });

    // Nothing lost, nothing twice: the conversation from before is still there, the new message once.
    await send(bob, "Welcome back");
    await message(alice, "Welcome back").waitFor();
    for (const page of [alice, bob]) {
      for (const text of ["Hello Bob", "Hi Alice, reading you", "Sent while the server was down", "Welcome back"]) {
        expect(await message(page, text).count()).toBe(1);
      }
    }
    await expect(alice.locator("#status").textContent()).resolves.toBe("Live");
    await alice.screenshot({ path: join(OUTPUT, "e2e-after-restart.png") });
  });

  test("the page fits a narrow screen", async () => {
    await alice.setViewportSize({ width: 375, height: 760 });
    const overflow = await alice.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    expect(overflow).toBeLessThanOrEqual(0);
    await expect(alice.locator("#composer").isVisible()).resolves.toBe(true);
    await alice.screenshot({ path: join(OUTPUT, "e2e-narrow.png"), fullPage: true });
  });
});
