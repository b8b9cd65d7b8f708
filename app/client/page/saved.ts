// What the page keeps in sessionStorage so that a reload resumes: the tab's connectionId, the user,
// each room's position (epoch and newest offset seen) and read position, the conversation on screen,
// the direct-message conversations and the inbox position.
//
// The server keeps read positions and each user's direct-message inbox: a new tab or device gets
// them from there (the inbox resume without a position brings every direct message the server
// keeps). The copies here let a reload show the conversations at once and resume the inbox after
// what it already shows.
import type { InboxPosition, RoomPosition } from "@realtime-chat/client";

export interface SavedDirect {
  key: string;
  id?: string;
  from: string;
  to: string;
  text: string;
  ts: number;
}

export interface Saved {
  user: string;
  current: string;
  /** Room -> the newest position seen, handed to join() so the server replays what came after. */
  rooms: Record<string, RoomPosition | null>;
  /** Room -> read up to this position. */
  reads: Record<string, RoomPosition>;
  /** Other user -> the conversation's messages (the newest MAX_DIRECTS) and the newest ts read. */
  directs: Record<string, { items: SavedDirect[]; readTs: number }>;
  /** Where the inbox was left off: the next connection of a reloaded page resumes after it. */
  inbox?: InboxPosition;
}

const KEY = "chat.session";
const MAX_DIRECTS = 200;

export function loadSaved(): Saved | undefined {
  try {
    const raw = sessionStorage.getItem(KEY);
    const saved = raw ? (JSON.parse(raw) as Saved) : undefined;
    return saved?.user ? saved : undefined;
  } catch {
    return undefined;
  }
}

export function save(saved: Saved) {
  for (const d of Object.values(saved.directs)) d.items = d.items.slice(-MAX_DIRECTS);
  try {
    sessionStorage.setItem(KEY, JSON.stringify(saved));
  } catch {
    // Storage full or disabled: the page works on, a reload just starts over.
  }
}

export function forget() {
  sessionStorage.removeItem(KEY);
}
