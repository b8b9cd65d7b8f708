// The test page: a small chat UI on top of the client package, imported by its name as an app would.
// Bundled to public/chat.js by scripts/build.ts.
import {
  type ChatClient,
  type ConnectionState,
  connect,
  type RoomMessage,
  type RoomPosition,
  randomId,
} from "@realtime-chat/client";
import { $, el, formatTime } from "./dom.js";
import { forget, loadSaved, type Saved, type SavedDirect, save } from "./saved.js";

interface Item {
  /** sender + clientMsgId: the same for the pending copy, the live copy and the history copy. */
  key: string;
  from: string;
  text: string;
  ts: number;
  offset?: number;
  epoch?: string;
  pending: boolean;
  failed?: string;
}

interface Conversation {
  key: string;
  items: Item[];
  /** Room epochs in the order this page saw them: older epochs' messages sort first. */
  epochs: string[];
  /** Older messages exist on the server below the oldest one shown. */
  hasMore: boolean;
  loadingOlder: boolean;
  /** A direct-message conversation not opened yet. */
  fresh: boolean;
}

const TYPING_SHOWN_MS = 5_000;
const TYPING_SENT_EVERY_MS = 2_000;
const TYPING_IDLE_MS = 3_000;
const HISTORY_PAGE = 50;
const TITLE = "Realtime chat";

const page = {
  client: undefined as ChatClient | undefined,
  saved: undefined as Saved | undefined,
  me: "",
  current: "",
  conversations: new Map<string, Conversation>(),
  members: new Map<string, Set<string>>(),
  /** room -> reader -> newest offset read (other users' receipts) */
  reads: new Map<string, Map<string, number>>(),
  typing: new Map<string, Map<string, ReturnType<typeof setTimeout>>>(),
  readSent: new Map<string, number>(),
  lastTypingSent: 0,
  typingIdle: undefined as ReturnType<typeof setTimeout> | undefined,
  notice: "",
  saveScheduled: false,
};

/** One connectionId per tab: a reload resumes the same session on the server. */
function connectionId(): string {
  let id = sessionStorage.getItem("chat.connectionId");
  if (!id) sessionStorage.setItem("chat.connectionId", (id = randomId("web-")));
  return id;
}

const isRoom = (key: string) => key.startsWith("room:");
const nameOf = (key: string) => key.slice(key.indexOf(":") + 1);

function conversation(key: string): Conversation {
  let c = page.conversations.get(key);
  if (!c) {
    c = { key, items: [], epochs: [], hasMore: false, loadingOlder: false, fresh: false };
    page.conversations.set(key, c);
  }
  return c;
}

/** The epoch the client holds for a room: set by a join's answer, before the replay that follows it. */
function epochOf(room: string): string | undefined {
  return page.client?.joinedRooms.find((r) => r.room === room)?.epoch;
}

/** Adds or updates items by key and keeps the conversation in order: epoch as seen, then offset. */
function merge(convKey: string, items: Item[]) {
  const c = conversation(convKey);
  const byKey = new Map(c.items.map((i) => [i.key, i]));
  for (const item of items) {
    if (item.epoch && !c.epochs.includes(item.epoch)) c.epochs.push(item.epoch);
    const existing = byKey.get(item.key);
    if (existing) Object.assign(existing, item);
    else {
      c.items.push(item);
      byKey.set(item.key, item);
    }
  }
  if (isRoom(convKey)) {
    // Pending messages have no offset yet: they stay last, in the order they were written.
    const rank = (i: Item) => (i.offset === undefined ? Number.POSITIVE_INFINITY : c.epochs.indexOf(i.epoch ?? ""));
    c.items.sort((a, b) => rank(a) - rank(b) || (a.offset ?? 0) - (b.offset ?? 0));
  }
  if (convKey === page.current) renderMessages();
  renderLists();
}

const fromMessage = (m: RoomMessage, epoch: string | undefined): Item => ({
  key: `${m.from}/${m.clientMsgId}`,
  from: m.from,
  text: m.text,
  ts: m.ts,
  offset: m.offset,
  epoch,
  pending: false,
});

// ---- saved session ---------------------------------------------------------------------------

/** Writes the session once per task, however many changes came in it. */
function persist() {
  if (page.saveScheduled || !page.saved) return;
  page.saveScheduled = true;
  setTimeout(() => {
    page.saveScheduled = false;
    const saved = page.saved;
    const client = page.client;
    if (!saved || !client) return;
    for (const r of client.joinedRooms) saved.rooms[r.room] = r.epoch ? { epoch: r.epoch, offset: r.offset } : null;
    saved.current = page.current;
    saved.inbox = client.inboxPosition ?? saved.inbox;
    for (const [key, c] of page.conversations) {
      if (isRoom(key)) continue;
      const other = nameOf(key);
      const items: SavedDirect[] = c.items
        .filter((i) => !i.pending)
        .map((i) => ({ key: i.key, from: i.from, to: i.from === page.me ? other : page.me, text: i.text, ts: i.ts }));
      saved.directs[other] = { items, readTs: saved.directs[other]?.readTs ?? 0 };
    }
    save(saved);
  });
}

function readPosition(room: string): RoomPosition | undefined {
  return page.saved?.reads[room];
}

function unread(key: string): number {
  const c = page.conversations.get(key);
  if (!c) return 0;
  if (isRoom(key)) {
    const read = readPosition(nameOf(key));
    if (!read) return 0;
    return c.items.filter((i) => i.from !== page.me && i.epoch === read.epoch && (i.offset ?? 0) > read.offset).length;
  }
  const readTs = page.saved?.directs[nameOf(key)]?.readTs ?? 0;
  return c.items.filter((i) => i.from !== page.me && i.ts > readTs).length;
}

// ---- connection ------------------------------------------------------------------------------

function start(saved: Saved) {
  // A connect after a Disconnect starts over: what was shown belonged to the session that ended.
  page.conversations.clear();
  page.reads.clear();
  page.readSent.clear();
  page.saved = saved;
  page.me = saved.user;
  localStorage.setItem("chat.name", saved.user);
  for (const [other, d] of Object.entries(saved.directs)) {
    merge(
      `dm:${other}`,
      d.items.map((i) => ({ key: i.key, from: i.from, text: i.text, ts: i.ts, pending: false })),
    );
  }
  // ?retryMaxMs= lowers the reconnect ceiling (default 30 s), for trying restarts by hand and for tests.
  const retryMaxMs = Number(new URLSearchParams(location.search).get("retryMaxMs")) || undefined;
  const client = connect(location.origin, {
    connectionId: connectionId(),
    user: saved.user,
    // Direct messages sent while this page was away arrive as `direct` events after it.
    inbox: saved.inbox,
    backoff: retryMaxMs ? { maxMs: Math.max(1000, retryMaxMs) } : undefined,
  });
  page.client = client;
  client.on("state", ({ state, delayMs }) => {
    renderStatus(state);
    if (state === "reconnecting" && delayMs !== undefined)
      page.notice = `Connection lost; retrying in ${Math.ceil(delayMs / 100) / 10} s`;
    if (state === "open") page.notice = "";
    if (state === "closed") page.notice = client === page.client ? "Disconnected" : page.notice;
    // Presence is only known while connected: the rejoin after a reconnect asks for it again.
    if (state !== "open") page.members.clear();
    renderLists();
    renderQueue();
  });
  client.on("queue", renderQueue);
  client.on("inbox", persist);
  client.on("established", (s) => {
    const instance = $("#instance");
    instance.hidden = false;
    instance.dataset.color = s.color;
    instance.title = `server version ${s.version}`;
    $(".name", instance).textContent = s.instanceId;
    $(".color", instance).textContent = s.color === "none" ? "" : s.color;
  });
  client.on("goodbye", (g) => {
    page.notice = `Server is restarting; reconnecting in ${Math.ceil(g.retryAfterMs / 100) / 10} s`;
    renderQueue();
  });
  client.on("joined", async ({ room, epoch, offset, recovered, rejoin, readOffset }) => {
    const key = `room:${room}`;
    const c = conversation(key);
    if (!c.epochs.includes(epoch)) c.epochs.push(epoch);
    const reads = page.saved?.reads;
    // The server keeps the user's read position for all their devices: a room read further on
    // another device is read here too. A room joined for the first time without one counts as read
    // up to now; one that started over (a new epoch) has only what the server says was read.
    if (reads && !reads[room]) reads[room] = { epoch, offset: readOffset > 0 ? readOffset : offset };
    else if (reads && reads[room]!.epoch !== epoch) reads[room] = { epoch, offset: readOffset };
    else if (reads && readOffset > reads[room]!.offset) reads[room]!.offset = readOffset;
    if (!recovered && rejoin) {
      // Messages were missed and not replayed: what is shown of this epoch has a hole. Show the
      // server's recent history instead.
      c.items = c.items.filter((i) => i.pending || i.epoch !== epoch);
    }
    persist();
    renderLists();
    if (!(rejoin && recovered)) void loadHistory(room);
    try {
      page.members.set(room, new Set(await client.presence(room)));
    } catch {}
    renderLists();
    if (key === page.current) markRead();
  });
  client.on("presence_diff", ({ room: r, joins, leaves }) => {
    const set = page.members.get(r) ?? new Set<string>();
    for (const u of joins) set.add(u);
    for (const u of leaves) set.delete(u);
    page.members.set(r, set);
    renderLists();
  });
  client.on("message", (m) => {
    stopTyping(m.room, m.from);
    merge(`room:${m.room}`, [fromMessage(m, epochOf(m.room))]);
    persist();
    markRead();
  });
  client.on("direct", (d) => {
    const other = d.from === page.me ? d.to : d.from;
    const key = `dm:${other}`;
    const isNew = !page.conversations.has(key);
    merge(key, [{ key: `${d.from}/${d.clientMsgId}`, from: d.from, text: d.text, ts: d.ts, pending: false }]);
    if (d.from !== page.me) {
      if (isNew) conversation(key).fresh = true;
      announce(d.from, d.text);
    }
    persist();
    markRead();
    renderLists();
  });
  client.on("typing", ({ room: r, from, active }) => {
    if (active) showTyping(r, from);
    else stopTyping(r, from);
  });
  client.on("read", ({ room: r, from, offset }) => {
    if (from === page.me) {
      // This user read it in another tab or on another device.
      const read = readPosition(r);
      if (read && read.epoch === epochOf(r) && offset > read.offset) read.offset = offset;
      persist();
      renderLists();
      return;
    }
    let readers = page.reads.get(r);
    if (!readers) page.reads.set(r, (readers = new Map()));
    readers.set(from, Math.max(offset, readers.get(from) ?? 0));
    if (page.current === `room:${r}`) renderMessages();
  });
  for (const [room, position] of Object.entries(saved.rooms)) {
    conversation(`room:${room}`);
    void client.join(room, position ?? undefined).catch((e) => alert(`Cannot join ${room}: ${e.message}`));
  }
  select(saved.current);
  $("#connect").hidden = true;
  $("#disconnect").hidden = false;
  $("#join").hidden = false;
  for (const input of [$("#name"), $("#room")] as HTMLInputElement[]) input.disabled = true;
  ($("#text") as HTMLInputElement).disabled = false;
  ($("#send") as HTMLButtonElement).disabled = false;
  renderNotify();
}

function stop() {
  const client = page.client;
  page.client = undefined;
  page.saved = undefined;
  client?.close();
  // The user left: a reload does not connect again.
  forget();
  page.members.clear();
  renderStatus("closed");
  page.notice = "Disconnected";
  renderQueue();
  renderLists();
  $("#connect").hidden = false;
  $("#disconnect").hidden = true;
  $("#join").hidden = true;
  for (const input of [$("#name"), $("#room")] as HTMLInputElement[]) input.disabled = false;
  ($("#text") as HTMLInputElement).disabled = true;
  ($("#send") as HTMLButtonElement).disabled = true;
}

/** The newest messages of a room (after a join), or those before the oldest shown (scrolling up). */
async function loadHistory(room: string, older = false) {
  const client = page.client;
  const key = `room:${room}`;
  const c = conversation(key);
  const epoch = epochOf(room);
  if (!client || !epoch || c.loadingOlder) return;
  const shown = c.items.filter((i) => i.epoch === epoch && i.offset !== undefined).map((i) => i.offset!);
  const before = older ? Math.min(...shown) : undefined;
  if (older && (!c.hasMore || before === undefined || before <= 1)) return;
  c.loadingOlder = older;
  renderMessages();
  try {
    const answer = await client.history(room, { limit: HISTORY_PAGE, ...(before ? { before } : {}) });
    // An answer from before a reconnect to a room that started over belongs to no epoch shown.
    if (epochOf(room) !== epoch) return;
    const anchor = older ? scrollAnchor() : undefined;
    // Only the oldest page decides whether more exist; the newest page may overlap what is shown.
    const oldest = Math.min(...shown, Number.POSITIVE_INFINITY);
    if (older || (answer.messages[0]?.offset ?? 0) <= oldest) c.hasMore = answer.hasMore;
    c.loadingOlder = false;
    merge(
      key,
      answer.messages.map((m) => fromMessage(m, epoch)),
    );
    anchor?.();
    markRead();
  } catch {
    c.loadingOlder = false;
    if (key === page.current) renderMessages();
  }
}

// ---- sending ---------------------------------------------------------------------------------

async function sendCurrent(text: string) {
  const client = page.client;
  if (!client || !page.current) return;
  const clientMsgId = randomId("m");
  const key = `${page.me}/${clientMsgId}`;
  const convKey = page.current;
  merge(convKey, [{ key, from: page.me, text, ts: Date.now(), pending: true }]);
  scrollToEnd();
  try {
    if (isRoom(convKey)) {
      const room = nameOf(convKey);
      void client.typing(room, false).catch(() => {});
      page.lastTypingSent = 0;
      const sent = await client.send(room, text, clientMsgId);
      merge(convKey, [
        { key, from: page.me, text, ts: sent.ts, offset: sent.offset, epoch: epochOf(room), pending: false },
      ]);
    } else {
      const sent = await client.sendDirect(nameOf(convKey), text, clientMsgId);
      merge(convKey, [{ key, from: page.me, text, ts: sent.ts, pending: false }]);
    }
  } catch (error) {
    merge(convKey, [{ key, from: page.me, text, ts: Date.now(), pending: false, failed: (error as Error).message }]);
  }
  persist();
}

function onComposerInput() {
  const client = page.client;
  if (!client || !isRoom(page.current) || client.state !== "open") return;
  const room = nameOf(page.current);
  const now = Date.now();
  if (now - page.lastTypingSent > TYPING_SENT_EVERY_MS) {
    page.lastTypingSent = now;
    void client.typing(room, true).catch(() => {});
  }
  clearTimeout(page.typingIdle);
  page.typingIdle = setTimeout(() => {
    page.lastTypingSent = 0;
    void client.typing(room, false).catch(() => {});
  }, TYPING_IDLE_MS);
}

/** The conversation on screen is read while the page is visible: badges reset, the room is told. */
function markRead() {
  const client = page.client;
  const saved = page.saved;
  if (!client || !saved || document.visibilityState !== "visible" || !page.current) return;
  const c = conversation(page.current);
  if (!isRoom(page.current)) {
    const other = nameOf(page.current);
    const newest = Math.max(0, ...c.items.map((i) => i.ts));
    const d = (saved.directs[other] ??= { items: [], readTs: 0 });
    if (newest > d.readTs) {
      d.readTs = newest;
      persist();
      renderLists();
    }
    return;
  }
  const room = nameOf(page.current);
  const epoch = epochOf(room);
  const inEpoch = c.items.filter((i) => i.offset !== undefined && i.epoch === epoch);
  const newest = inEpoch.at(-1);
  if (!epoch || !newest) return;
  const read = saved.reads[room];
  if (!read || read.epoch !== epoch || read.offset < newest.offset!) {
    saved.reads[room] = { epoch, offset: newest.offset! };
    persist();
    renderLists();
  }
  // Receipts tell the others what this user has seen of their messages.
  const newestOthers = inEpoch.filter((i) => i.from !== page.me).at(-1);
  if (client.state !== "open" || !newestOthers?.offset) return;
  if ((page.readSent.get(`${room}@${epoch}`) ?? 0) >= newestOthers.offset) return;
  page.readSent.set(`${room}@${epoch}`, newestOthers.offset);
  void client.markRead(room, newestOthers.offset).catch(() => {});
}

/** A direct message while the page is hidden is announced, if the user allowed notifications. */
function announce(from: string, text: string) {
  if (document.visibilityState === "visible") return;
  if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
  const notification = new Notification(`Message from ${from}`, { body: text, tag: `dm:${from}` });
  notification.onclick = () => {
    window.focus();
    select(`dm:${from}`);
  };
}

// ---- typing indicator ------------------------------------------------------------------------

function showTyping(room: string, from: string) {
  let users = page.typing.get(room);
  if (!users) page.typing.set(room, (users = new Map()));
  clearTimeout(users.get(from));
  users.set(
    from,
    setTimeout(() => stopTyping(room, from), TYPING_SHOWN_MS),
  );
  renderTyping();
}

function stopTyping(room: string, from: string) {
  const users = page.typing.get(room);
  if (!users?.has(from)) return;
  clearTimeout(users.get(from));
  users.delete(from);
  renderTyping();
}

// ---- rendering -------------------------------------------------------------------------------

const STATUS: Record<ConnectionState, [string, string]> = {
  connecting: ["Connecting", "reconnecting"],
  open: ["Live", "live"],
  reconnecting: ["Reconnecting", "reconnecting"],
  closed: ["Offline", "offline"],
};

function renderStatus(state: ConnectionState) {
  const status = $("#status");
  const [label, cls] = STATUS[state];
  status.textContent = label;
  status.className = `status ${cls}`;
  status.dataset.state = state;
  // The instance stays shown, dimmed, after the connection ends: it is where the page last was.
  $("#instance").classList.toggle("stale", state !== "open");
}

function renderQueue() {
  const queue = $("#queue");
  const waiting = page.client?.queued ?? 0;
  const parts = [page.notice, waiting > 0 ? `${waiting} waiting to be sent` : ""].filter(Boolean);
  queue.textContent = parts.join(" · ");
  queue.hidden = parts.length === 0;
  queue.dataset.waiting = String(waiting);
}

function renderNotify() {
  const button = $("#notify") as HTMLButtonElement;
  button.hidden = typeof Notification === "undefined" || Notification.permission !== "default" || !page.client;
}

function select(key: string) {
  page.current = key;
  const c = conversation(key);
  c.fresh = false;
  $("#title").textContent = isRoom(key) ? `# ${nameOf(key)}` : `@ ${nameOf(key)}`;
  const input = $("#text") as HTMLInputElement;
  input.placeholder = isRoom(key) ? `Message #${nameOf(key)}` : `Direct message to ${nameOf(key)}`;
  persist();
  renderLists();
  renderMessages(true);
  renderTyping();
  markRead();
}

function renderLists() {
  const rooms = $("#rooms");
  const directs = $("#directs");
  rooms.replaceChildren();
  directs.replaceChildren();
  let total = 0;
  for (const [key, c] of page.conversations) {
    const count = unread(key);
    total += count;
    const classes = [key === page.current ? "active" : "", count > 0 ? "unread" : "", c.fresh ? "fresh" : ""];
    const li = el("li", { className: classes.filter(Boolean).join(" "), dataset: { key } }, [
      el("span", { className: "label" }, [isRoom(key) ? `# ${nameOf(key)}` : `@ ${nameOf(key)}`]),
    ]);
    if (count > 0) li.append(el("span", { className: "badge", title: `${count} unread` }, [String(count)]));
    li.addEventListener("click", () => select(key));
    (isRoom(key) ? rooms : directs).append(li);
  }
  if (directs.childElementCount === 0) directs.append(el("li", { className: "empty" }, ["No conversations yet"]));
  document.title = total > 0 ? `(${total}) ${TITLE}` : TITLE;

  // In a direct conversation the list shows the first room's members: people to write to.
  const room = isRoom(page.current)
    ? nameOf(page.current)
    : [...page.conversations.keys()].filter(isRoom).map(nameOf)[0];
  $("#members-room").textContent = room ? `#${room}` : "—";
  const members = $("#members");
  members.replaceChildren();
  const online = [...(page.members.get(room ?? "") ?? [])].sort();
  for (const user of online) {
    const li = el("li", { title: user === page.me ? "you" : `Direct message ${user}`, dataset: { user } }, [
      user === page.me ? `${user} (you)` : user,
    ]);
    if (user !== page.me) li.addEventListener("click", () => select(`dm:${user}`));
    members.append(li);
  }
  if (online.length === 0) {
    const why = page.client?.state === "open" ? "Loading…" : "No one: you are offline";
    members.append(el("li", { className: "empty" }, [why]));
  }
}

function atEnd(list: HTMLElement) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 48;
}

function scrollToEnd() {
  const list = $("#messages");
  list.scrollTop = list.scrollHeight;
}

/** Keeps the messages on screen where they are while older ones are added above them. */
function scrollAnchor(): () => void {
  const list = $("#messages");
  const fromBottom = list.scrollHeight - list.scrollTop;
  return () => {
    list.scrollTop = list.scrollHeight - fromBottom;
  };
}

function renderMessages(toEnd = false) {
  const list = $("#messages");
  const stick = toEnd || atEnd(list);
  const c = page.conversations.get(page.current);
  list.replaceChildren();
  if (!c) return;
  if (isRoom(page.current)) {
    const top = c.loadingOlder
      ? "Loading older messages…"
      : c.hasMore
        ? "Scroll up for older messages"
        : `The beginning of #${nameOf(page.current)}`;
    list.append(el("li", { className: "notice", dataset: { notice: "top" } }, [top]));
  }
  const room = isRoom(page.current) ? nameOf(page.current) : undefined;
  const seenBy = room ? receipts(room, c.items) : new Map<Item, string[]>();
  let previousEpoch: string | undefined;
  for (const item of c.items) {
    if (previousEpoch && item.epoch && item.epoch !== previousEpoch) {
      list.append(el("li", { className: "notice divider" }, ["The server started this room over"]));
    }
    if (item.epoch) previousEpoch = item.epoch;
    const mine = item.from === page.me;
    const dataset: Record<string, string> = { key: item.key };
    if (item.offset !== undefined) dataset.offset = String(item.offset);
    const li = el(
      "li",
      {
        className: `msg${mine ? " mine" : ""}${item.pending ? " pending" : ""}${item.failed ? " failed" : ""}`,
        dataset,
      },
      [
        el("div", { className: "meta" }, [
          el("span", { className: "from" }, [item.from]),
          el("time", { dateTime: new Date(item.ts).toISOString() }, [formatTime(item.ts)]),
        ]),
        el("div", { className: "text" }, [item.text]),
      ],
    );
    const readers = seenBy.get(item);
    if (item.pending) li.append(el("div", { className: "state" }, ["sending…"]));
    else if (item.failed) li.append(el("div", { className: "state error" }, [`not sent: ${item.failed}`]));
    else if (readers?.length) li.append(el("div", { className: "state seen" }, [`Seen by ${readers.join(", ")}`]));
    list.append(li);
  }
  if (stick) list.scrollTop = list.scrollHeight;
}

/** Each reader is shown under the newest message (of the room's current epoch) they have read. */
function receipts(room: string, items: Item[]): Map<Item, string[]> {
  const out = new Map<Item, string[]>();
  const epoch = epochOf(room);
  for (const [reader, offset] of page.reads.get(room) ?? []) {
    if (reader === page.me) continue;
    const item = items.filter((i) => i.epoch === epoch && i.offset !== undefined && i.offset <= offset).at(-1);
    if (item) out.set(item, [...(out.get(item) ?? []), reader]);
  }
  return out;
}

function renderTyping() {
  const room = isRoom(page.current) ? nameOf(page.current) : "";
  const users = [...(page.typing.get(room)?.keys() ?? [])].filter((u) => u !== page.me);
  $("#typing").textContent =
    users.length === 0 ? "" : `${users.join(", ")} ${users.length === 1 ? "is" : "are"} typing…`;
}

// ---- wiring ----------------------------------------------------------------------------------

function main() {
  const name = $("#name") as HTMLInputElement;
  const room = $("#room") as HTMLInputElement;
  const params = new URLSearchParams(location.search);
  name.value = params.get("user") ?? localStorage.getItem("chat.name") ?? "";
  if (params.get("room")) room.value = params.get("room")!;
  const fresh = (user: string, r: string): Saved => ({
    user,
    current: `room:${r}`,
    rooms: { [r]: null },
    reads: {},
    directs: {},
  });
  $("#login").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!page.client) start(fresh(name.value.trim(), room.value.trim()));
  });
  $("#disconnect").addEventListener("click", stop);
  $("#join").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("#join-room") as HTMLInputElement;
    const r = input.value.trim();
    if (!page.client || !page.saved || !r) return;
    page.saved.rooms[r] ??= null;
    void page.client.join(r).catch((err) => alert(`Cannot join ${r}: ${err.message}`));
    input.value = "";
    select(`room:${r}`);
  });
  $("#notify").addEventListener("click", async () => {
    await Notification.requestPermission();
    renderNotify();
  });
  const text = $("#text") as HTMLInputElement;
  text.addEventListener("input", onComposerInput);
  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = text.value.trim();
    if (!value) return;
    text.value = "";
    void sendCurrent(value);
  });
  $("#messages").addEventListener("scroll", (e) => {
    const list = e.currentTarget as HTMLElement;
    if (list.scrollTop < 40 && isRoom(page.current)) void loadHistory(nameOf(page.current), true);
  });
  document.addEventListener("visibilitychange", markRead);
  renderStatus("closed");
  renderLists();
  // A reload resumes the tab's session: same connectionId, user, rooms and positions.
  const saved = loadSaved();
  if (saved) {
    name.value = saved.user;
    room.value = Object.keys(saved.rooms)[0] ?? room.value;
    start(saved);
  } else if (params.get("autoconnect") === "1" && name.value) start(fresh(name.value.trim(), room.value.trim()));
}

main();
