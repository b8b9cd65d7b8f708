// The test page: a small chat UI on top of the client library. Bundled to public/chat.js.
import { type ChatClient, type ConnectionState, connect, randomId } from "@realtime-chat/client";
import { $, el, formatTime } from "./dom.js";

interface Item {
  key: string;
  from: string;
  text: string;
  ts: number;
  offset?: number;
  epoch?: string;
  pending: boolean;
}

interface Conversation {
  title: string;
  items: Item[];
  keys: Set<string>;
}

const TYPING_SHOWN_MS = 5_000;
const TYPING_SENT_EVERY_MS = 2_000;
const TYPING_IDLE_MS = 3_000;

const page = {
  client: undefined as ChatClient | undefined,
  me: "",
  current: "",
  conversations: new Map<string, Conversation>(),
  members: new Map<string, Set<string>>(),
  epochs: new Map<string, string>(),
  /** room -> reader -> newest offset read */
  reads: new Map<string, Map<string, number>>(),
  typing: new Map<string, Map<string, ReturnType<typeof setTimeout>>>(),
  readSent: new Map<string, number>(),
  lastTypingSent: 0,
  typingIdle: undefined as ReturnType<typeof setTimeout> | undefined,
  notice: "",
};

/** One connectionId per tab: a reload resumes the same session on the server. */
function connectionId(): string {
  let id = sessionStorage.getItem("chat.connectionId");
  if (!id) sessionStorage.setItem("chat.connectionId", (id = randomId("web-")));
  return id;
}

function conversation(key: string): Conversation {
  let c = page.conversations.get(key);
  if (!c) {
    const title = key.startsWith("room:") ? `# ${key.slice(5)}` : `@ ${key.slice(3)}`;
    page.conversations.set(key, (c = { title, items: [], keys: new Set() }));
  }
  return c;
}

/** Adds an item once per key; a later copy only confirms the pending one. */
function addItem(convKey: string, item: Item) {
  const c = conversation(convKey);
  const existing = c.items.find((i) => i.key === item.key);
  if (existing) {
    Object.assign(existing, { ...item, pending: false });
  } else {
    c.items.push(item);
    c.keys.add(item.key);
  }
  if (convKey === page.current) renderMessages();
  renderLists();
}

// ---- connection ------------------------------------------------------------------------------

function start(name: string, room: string) {
  page.me = name;
  localStorage.setItem("chat.name", name);
  // ?retryMaxMs= lowers the reconnect ceiling (default 30 s), for trying restarts by hand and for tests.
  const retryMaxMs = Number(new URLSearchParams(location.search).get("retryMaxMs")) || undefined;
  const client = connect(location.origin, {
    connectionId: connectionId(),
    user: name,
    backoff: retryMaxMs ? { maxMs: Math.max(1000, retryMaxMs) } : undefined,
  });
  page.client = client;
  client.on("state", ({ state, delayMs }) => {
    renderStatus(state);
    if (state === "reconnecting" && delayMs !== undefined)
      page.notice = `Connection lost; retrying in ${Math.ceil(delayMs / 100) / 10} s`;
    if (state === "open") page.notice = "";
    if (state === "closed") page.notice = client === page.client ? "Disconnected" : page.notice;
    renderQueue();
  });
  client.on("established", (s) => {
    const instance = $("#instance");
    instance.hidden = false;
    instance.dataset.color = s.color;
    $(".name", instance).textContent = `${s.instanceId}${s.color !== "none" ? ` · ${s.color}` : ""}`;
  });
  client.on("goodbye", (g) => {
    page.notice = `Server is restarting; reconnecting in ${Math.ceil(g.retryAfterMs / 100) / 10} s`;
    renderQueue();
  });
  client.on("joined", async ({ room: joined, epoch }) => {
    page.epochs.set(joined, epoch);
    conversation(`room:${joined}`);
    try {
      page.members.set(joined, new Set(await client.presence(joined)));
    } catch {}
    renderLists();
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
    addItem(`room:${m.room}`, {
      key: `${m.from}/${m.clientMsgId}`,
      from: m.from,
      text: m.text,
      ts: m.ts,
      offset: m.offset,
      epoch: page.epochs.get(m.room),
      pending: false,
    });
    markRead();
  });
  client.on("direct", (d) => {
    const other = d.from === page.me ? d.to : d.from;
    addItem(`dm:${other}`, { key: `${d.from}/${d.clientMsgId}`, from: d.from, text: d.text, ts: d.ts, pending: false });
  });
  client.on("typing", ({ room: r, from, active }) => {
    if (active) showTyping(r, from);
    else stopTyping(r, from);
  });
  client.on("read", ({ room: r, from, offset }) => {
    let readers = page.reads.get(r);
    if (!readers) page.reads.set(r, (readers = new Map()));
    readers.set(from, Math.max(offset, readers.get(from) ?? 0));
    if (page.current === `room:${r}`) renderMessages();
  });
  void client.join(room).catch((e) => alert(`Cannot join ${room}: ${e.message}`));
  select(`room:${room}`);
  $("#connect").hidden = true;
  $("#disconnect").hidden = false;
  $("#join").hidden = false;
  for (const input of [$("#name"), $("#room")] as HTMLInputElement[]) input.disabled = true;
  ($("#text") as HTMLInputElement).disabled = false;
  ($("#send") as HTMLButtonElement).disabled = false;
}

function stop() {
  const client = page.client;
  page.client = undefined;
  client?.close();
  renderStatus("closed");
  page.notice = "Disconnected";
  renderQueue();
  $("#connect").hidden = false;
  $("#disconnect").hidden = true;
  $("#join").hidden = true;
  for (const input of [$("#name"), $("#room")] as HTMLInputElement[]) input.disabled = false;
  ($("#text") as HTMLInputElement).disabled = true;
  ($("#send") as HTMLButtonElement).disabled = true;
}

// ---- sending ---------------------------------------------------------------------------------

async function sendCurrent(text: string) {
  const client = page.client;
  if (!client || !page.current) return;
  const clientMsgId = randomId("m");
  const key = `${page.me}/${clientMsgId}`;
  const convKey = page.current;
  addItem(convKey, { key, from: page.me, text, ts: Date.now(), pending: true });
  renderQueue();
  try {
    if (convKey.startsWith("room:")) {
      const room = convKey.slice(5);
      void client.typing(room, false).catch(() => {});
      page.lastTypingSent = 0;
      const sent = await client.send(room, text, clientMsgId);
      addItem(convKey, {
        key,
        from: page.me,
        text,
        ts: sent.ts,
        offset: sent.offset,
        epoch: page.epochs.get(room),
        pending: false,
      });
    } else {
      const sent = await client.sendDirect(convKey.slice(3), text, clientMsgId);
      addItem(convKey, { key, from: page.me, text, ts: sent.ts, pending: false });
    }
  } catch (error) {
    const item = conversation(convKey).items.find((i) => i.key === key);
    if (item) item.text += ` — not sent: ${(error as Error).message}`;
    renderMessages();
  }
  renderQueue();
}

function onComposerInput() {
  const client = page.client;
  if (!client || !page.current.startsWith("room:") || client.state !== "open") return;
  const room = page.current.slice(5);
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

/** Tells the room what this user has seen, once per new offset, while the page is visible. */
function markRead() {
  const client = page.client;
  if (client?.state !== "open" || document.visibilityState !== "visible" || !page.current.startsWith("room:")) return;
  const room = page.current.slice(5);
  const epoch = page.epochs.get(room);
  const newest = conversation(page.current)
    .items.filter((i) => i.offset !== undefined && i.epoch === epoch && i.from !== page.me)
    .at(-1);
  if (!newest?.offset || (page.readSent.get(`${room}@${epoch}`) ?? 0) >= newest.offset) return;
  page.readSent.set(`${room}@${epoch}`, newest.offset);
  void client.markRead(room, newest.offset).catch(() => {});
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
}

function renderQueue() {
  const queue = $("#queue");
  const waiting = page.client?.queued ?? 0;
  const parts = [page.notice, waiting > 0 ? `${waiting} waiting to be sent` : ""].filter(Boolean);
  queue.textContent = parts.join(" · ");
  queue.hidden = parts.length === 0;
}

function select(key: string) {
  page.current = key;
  conversation(key);
  $("#title").textContent = conversation(key).title;
  const input = $("#text") as HTMLInputElement;
  input.placeholder = key.startsWith("room:") ? `Message #${key.slice(5)}` : `Direct message to ${key.slice(3)}`;
  renderLists();
  renderMessages();
  renderTyping();
  markRead();
}

function renderLists() {
  const rooms = $("#rooms");
  const directs = $("#directs");
  rooms.replaceChildren();
  directs.replaceChildren();
  for (const [key, c] of page.conversations) {
    const li = el("li", { className: key === page.current ? "active" : "", dataset: { key } }, [
      el("span", {}, [key.slice(key.indexOf(":") + 1)]),
      el("span", { className: "count" }, [String(c.items.length)]),
    ]);
    li.addEventListener("click", () => select(key));
    (key.startsWith("room:") ? rooms : directs).append(li);
  }
  const room = page.current.startsWith("room:") ? page.current.slice(5) : [...page.members.keys()][0];
  $("#members-room").textContent = room ? `#${room}` : "—";
  const members = $("#members");
  members.replaceChildren();
  for (const user of [...(page.members.get(room ?? "") ?? [])].sort()) {
    const li = el("li", { title: user === page.me ? "you" : `Direct message ${user}`, dataset: { user } }, [
      user === page.me ? `${user} (you)` : user,
    ]);
    if (user !== page.me) li.addEventListener("click", () => select(`dm:${user}`));
    members.append(li);
  }
}

function renderMessages() {
  const list = $("#messages");
  const c = page.conversations.get(page.current);
  list.replaceChildren();
  if (!c) return;
  const room = page.current.startsWith("room:") ? page.current.slice(5) : undefined;
  const seenBy = room ? receipts(room, c.items) : new Map<Item, string[]>();
  for (const item of c.items) {
    const mine = item.from === page.me;
    const li = el(
      "li",
      { className: `msg${mine ? " mine" : ""}${item.pending ? " pending" : ""}`, dataset: { key: item.key } },
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
    else if (readers?.length) li.append(el("div", { className: "state seen" }, [`Seen by ${readers.join(", ")}`]));
    list.append(li);
  }
  list.scrollTop = list.scrollHeight;
}

/** Each reader is shown under the newest message (of the room's current epoch) they have read. */
function receipts(room: string, items: Item[]): Map<Item, string[]> {
  const out = new Map<Item, string[]>();
  const epoch = page.epochs.get(room);
  for (const [reader, offset] of page.reads.get(room) ?? []) {
    if (reader === page.me) continue;
    const item = items.filter((i) => i.epoch === epoch && i.offset !== undefined && i.offset <= offset).at(-1);
    if (item) out.set(item, [...(out.get(item) ?? []), reader]);
  }
  return out;
}

function renderTyping() {
  const room = page.current.startsWith("room:") ? page.current.slice(5) : "";
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
  $("#login").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!page.client) start(name.value.trim(), room.value.trim());
  });
  $("#disconnect").addEventListener("click", stop);
  $("#join").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("#join-room") as HTMLInputElement;
    const r = input.value.trim();
    if (!page.client || !r) return;
    void page.client.join(r).catch((err) => alert(`Cannot join ${r}: ${err.message}`));
    input.value = "";
    select(`room:${r}`);
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
  document.addEventListener("visibilitychange", markRead);
  renderStatus("closed");
  if (params.get("autoconnect") === "1" && name.value) start(name.value.trim(), room.value.trim());
}

main();
