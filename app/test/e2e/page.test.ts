// The chat page as people use it, in headless Chromium against the compiled binary: history on join
// and on scrolling up, a reload that resumes, unread badges and the tab title, direct messages that
// stand out, are announced while the page is hidden and are kept for a user who was offline, presence once offline, the favicon. The other
// users are client library instances in this process. Screenshots go to app/test-output/page-*.png.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { type ChatClient, connect, type ReadReceipt } from "../../client/index";
import { type RunningBinary, startBinary } from "../helpers/binary";
import { connId } from "../helpers/server";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const OUTPUT = join(import.meta.dir, "..", "..", "test-output");
const TIMEOUT = 10_000;
setDefaultTimeout(45_000);

let cwd: string;
let profile: string;
let binary: RunningBinary;
let context: BrowserContext;
const users: ChatClient[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)`);
  mkdirSync(OUTPUT, { recursive: true });
  cwd = mkdtempSync(join(tmpdir(), "chat-page-cwd-"));
  profile = mkdtempSync(join(tmpdir(), "chat-page-profile-"));
  binary = await startBinary({ INSTANCE_ID: "page-blue", COLOR: "blue", LOG_LEVEL: "error" }, { cwd });
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
  // The user allowed notifications; each one the page shows is recorded.
  await context.grantPermissions(["notifications"], { origin: binary.httpUrl });
  await context.addInitScript(() => {
    const shown: { title: string; body?: string }[] = [];
    (window as unknown as { shownNotifications: typeof shown }).shownNotifications = shown;
    const Real = window.Notification;
    window.Notification = class extends Real {
      constructor(title: string, options?: NotificationOptions) {
        shown.push({ title, body: options?.body });
        super(title, options);
      }
    } as typeof Notification;
  });
});

afterAll(async () => {
  for (const user of users) user.close();
  await context?.close();
  await binary?.stop();
  for (const dir of [cwd, profile]) if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Another user, through the client library. */
async function user(name: string, rooms: string[] = []): Promise<ChatClient> {
  const client = connect(binary.httpUrl, { connectionId: connId(name), user: name });
  users.push(client);
  for (const room of rooms) await client.join(room);
  return client;
}

/** A page that logs in as `name` into `room`; it fails the test on a page error or an HTTP error. */
async function openPage(name: string, room: string): Promise<{ page: Page; problems: string[] }> {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(error.message));
  page.on("requestfailed", (request) => problems.push(`${request.url()} ${request.failure()?.errorText}`));
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.url()} ${response.status()}`);
  });
  await page.goto(`${binary.httpUrl}/?user=${name}&room=${room}`);
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="open"]');
  return { page, problems };
}

const message = (page: Page, text: string) => page.locator("#messages .msg", { hasText: text });
const offsets = (page: Page) =>
  page.locator("#messages .msg").evaluateAll((items) => items.map((li) => Number((li as HTMLElement).dataset.offset)));
const badge = (page: Page, key: string) => page.locator(`li[data-key="${key}"] .badge`);

/**
 * Waits until the badge of `key` reads exactly `count`. A badge changes a moment after the frame
 * that changes it reaches the page, which may be after the sender's own answer: reading it once
 * could see the count of one message earlier.
 */
async function untilBadge(page: Page, key: string, count: number) {
  await badge(page, key)
    .filter({ hasText: new RegExp(`^${count}$`) })
    .waitFor();
}

/** Waits until the tab's title is `title`, for the same reason. */
async function untilTitle(page: Page, title: string) {
  await page.waitForFunction((expected) => document.title === expected, title);
}

/** Resolves with the first receipt matching `match` that `client` receives. */
function receipt(client: ChatClient, match: (r: ReadReceipt) => boolean): Promise<ReadReceipt> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no matching read receipt in time")), TIMEOUT);
    const off = client.on("read", (r) => {
      if (!match(r)) return;
      clearTimeout(timer);
      off();
      resolve(r);
    });
  });
}

describe("the chat page", () => {
  test("loads with its favicon and no HTTP error; the instance and its color are shown", async () => {
    const { page, problems } = await openPage("fay", "fav");
    expect(await page.locator('link[rel="icon"]').getAttribute("href")).toBe("/favicon.svg");
    const icon = await fetch(`${binary.httpUrl}/favicon.svg`);
    expect(icon.status).toBe(200);
    expect(icon.headers.get("content-type")).toContain("image/svg+xml");
    await expect(page.locator("#instance .name").textContent()).resolves.toBe("page-blue");
    await expect(page.locator("#instance .color").textContent()).resolves.toBe("blue");
    expect(await page.locator("#instance").isVisible()).toBe(true);
    expect(problems).toEqual([]);
  });

  test("a late joiner sees the recent history, and older messages when scrolling up, without duplicates or gaps", async () => {
    const carol = await user("carol", ["history"]);
    for (let i = 1; i <= 70; i++) await carol.send("history", `history message ${i}`);
    const { page, problems } = await openPage("hank", "history");

    // The newest page: offsets 21 to 70, in order.
    await message(page, "history message 70").waitFor();
    expect(await offsets(page)).toEqual(Array.from({ length: 50 }, (_, i) => i + 21));
    await page.locator("#messages .notice", { hasText: "Scroll up for older messages" }).waitFor();

    // A live message joins at the seam.
    await carol.send("history", "history message 71");
    await message(page, "history message 71").waitFor();

    await page.locator("#messages").evaluate((list) => {
      list.scrollTop = 0;
    });
    await page.locator("#messages .notice", { hasText: "The beginning of #history" }).waitFor();
    expect(await offsets(page)).toEqual(Array.from({ length: 71 }, (_, i) => i + 1));
    // The messages that were on screen stay where they were: the view did not jump to the top.
    expect(await page.locator("#messages").evaluate((list) => list.scrollTop)).toBeGreaterThan(0);
    await page.screenshot({ path: join(OUTPUT, "page-history.png") });
    expect(problems).toEqual([]);
  });

  test("a reload resumes: same connection, rooms, missed messages counted unread, direct conversations back", async () => {
    const dora = await user("dora", ["reload"]);
    const { page, problems } = await openPage("ivan", "reload");
    await dora.send("reload", "before the reload");
    await message(page, "before the reload").waitFor();
    await dora.sendDirect("ivan", "a direct message to keep");
    await page.locator('#directs li[data-key="dm:dora"]').click();
    await message(page, "a direct message to keep").waitFor();
    const connectionId = await page.evaluate(() => sessionStorage.getItem("chat.connectionId"));

    // The tab goes away (as during a reload) while Dora writes on.
    await page.goto("about:blank");
    await dora.send("reload", "missed 1");
    await dora.send("reload", "missed 2");
    await page.goto(`${binary.httpUrl}/`);

    // Nobody pressed Connect: the page came back by itself, as the same connection.
    await page.waitForSelector('#status[data-state="open"]');
    expect(await page.evaluate(() => sessionStorage.getItem("chat.connectionId"))).toBe(connectionId);
    await expect(page.locator("#title").textContent()).resolves.toBe("@ dora");
    await message(page, "a direct message to keep").waitFor();
    await untilBadge(page, "room:reload", 2);
    await untilTitle(page, "(2) Realtime chat");
    await page.screenshot({ path: join(OUTPUT, "page-after-reload.png") });

    await page.locator('#rooms li[data-key="room:reload"]').click();
    for (const text of ["before the reload", "missed 1", "missed 2"]) expect(await message(page, text).count()).toBe(1);
    await badge(page, "room:reload").waitFor({ state: "detached" });
    await untilTitle(page, "Realtime chat");
    expect(problems).toEqual([]);
  });

  test("a room read further on another device counts only the rest as unread after a reload", async () => {
    const omar = await user("omar", ["u-devices"]);
    const { page, problems } = await openPage("pia", "u-devices");
    await omar.send("u-devices", "seen here");
    await message(page, "seen here").waitFor();
    // Another room on screen, so u-devices is not read by being shown; then the tab goes away.
    await page.fill("#join-room", "u-elsewhere");
    await page.press("#join-room", "Enter");
    await page.locator("#title", { hasText: "# u-elsewhere" }).waitFor();
    await page.goto("about:blank");
    for (const text of ["one", "two", "three"]) await omar.send("u-devices", text);
    // Pia reads up to "two" (offset 3) on her phone.
    const phone = await user("pia", ["u-devices"]);
    expect(await phone.markRead("u-devices", 3)).toBe(3);

    await page.goto(`${binary.httpUrl}/`);
    await page.waitForSelector('#status[data-state="open"]');
    await untilBadge(page, "room:u-devices", 1);
    expect(problems).toEqual([]);
  });

  test("unread badges per room and conversation reset when read; the title shows the total", async () => {
    const { page, problems } = await openPage("judy", "u-main");
    await page.fill("#join-room", "u-side");
    await page.press("#join-room", "Enter");
    await page.locator("#title", { hasText: "# u-side" }).waitFor();
    await page.locator('#rooms li[data-key="room:u-main"]').click();
    await page.locator('#members li[data-user="judy"]').waitFor();

    const kim = await user("kim", ["u-side"]);
    await kim.send("u-side", "side 1");
    await kim.send("u-side", "side 2");
    await kim.sendDirect("judy", "are you there?");
    await untilBadge(page, "room:u-side", 2);
    await badge(page, "dm:kim").waitFor();
    await untilBadge(page, "dm:kim", 1);
    // A new conversation stands out until it is opened.
    expect(await page.locator('#directs li[data-key="dm:kim"]').getAttribute("class")).toContain("fresh");
    await untilTitle(page, "(3) Realtime chat");
    await page.screenshot({ path: join(OUTPUT, "page-unread.png") });

    const read = receipt(kim, (r) => r.room === "u-side" && r.from === "judy");
    await page.locator('#rooms li[data-key="room:u-side"]').click();
    expect((await read).offset).toBe(2);
    await badge(page, "room:u-side").waitFor({ state: "detached" });
    await untilTitle(page, "(1) Realtime chat");
    await page.locator('#directs li[data-key="dm:kim"]').click();
    await badge(page, "dm:kim").waitFor({ state: "detached" });
    await untilTitle(page, "Realtime chat");
    expect(await page.locator('#directs li[data-key="dm:kim"]').getAttribute("class")).not.toContain("fresh");
    expect(problems).toEqual([]);
  });

  test("a direct message sent while the user was offline shows up, unread, when they log in", async () => {
    const lea = await user("lea");
    // Otto has never connected: the server keeps the message in his inbox.
    await lea.sendDirect("otto", "while you were away");
    const { page, problems } = await openPage("otto", "o-main");
    await badge(page, "dm:lea").waitFor();
    await untilBadge(page, "dm:lea", 1);
    await page.locator('#directs li[data-key="dm:lea"]').click();
    await message(page, "while you were away").waitFor();
    await expect(message(page, "while you were away").count()).resolves.toBe(1);
    expect(problems).toEqual([]);
  });

  test("a direct message while the page is hidden is announced with a notification", async () => {
    const { page, problems } = await openPage("lena", "n-room");
    const mo = await user("mo");
    // The user switches to another tab.
    await page.evaluate(() => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await mo.sendDirect("lena", "lunch at noon?");
    await page.waitForFunction(
      () => (window as unknown as { shownNotifications: unknown[] }).shownNotifications.length > 0,
    );
    expect(
      await page.evaluate(() => (window as unknown as { shownNotifications: unknown[] }).shownNotifications),
    ).toEqual([{ title: "Message from mo", body: "lunch at noon?" }]);
    await badge(page, "dm:mo").waitFor();

    // Back on the tab: nothing more is announced, the badge stays until the conversation is opened.
    await page.evaluate(() => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "visible" });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await mo.sendDirect("lena", "or one?");
    await untilBadge(page, "dm:mo", 2);
    await page.locator('#directs li[data-key="dm:mo"]').click();
    await message(page, "or one?").waitFor();
    expect(
      await page.evaluate(() => (window as unknown as { shownNotifications: unknown[] }).shownNotifications),
    ).toHaveLength(1);
    await page.screenshot({ path: join(OUTPUT, "page-direct.png") });
    expect(problems).toEqual([]);
  });

  test("after Disconnect the page shows no one online", async () => {
    await user("nina", ["d-room"]);
    const { page, problems } = await openPage("otto", "d-room");
    await page.locator('#members li[data-user="nina"]').waitFor();
    await page.click("#disconnect");
    await page.waitForSelector('#status[data-state="closed"]');
    expect(await page.locator("#members li[data-user]").count()).toBe(0);
    await page.locator("#members li.empty", { hasText: "offline" }).waitFor();
    // The last instance stays visible, dimmed.
    expect(await page.locator("#instance").getAttribute("class")).toContain("stale");
    await page.screenshot({ path: join(OUTPUT, "page-disconnected.png") });
    // And a reload does not connect again: the user left.
    await page.reload();
    await expect(page.locator("#status").getAttribute("data-state")).resolves.toBe("closed");
    expect(problems).toEqual([]);
  });
});
