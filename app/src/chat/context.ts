import type { Authenticator } from "../auth/auth";
import type { Backplane } from "../backplane/backplane";
import type { Config } from "../config";
import type { FrameBatcher } from "../connections/batching";
import type { ConnectionRegistry } from "../connections/registry";
import type { HistoryStore } from "../history/history";
import type { InboxStore } from "../inbox/inbox";
import type { Logger } from "../observability/logger";
import type { Metrics } from "../observability/metrics";
import type { PresenceStore } from "../presence/presence";
import type { ReadPositionStore } from "../reads/reads";
import type { RoomManager } from "../rooms/rooms";
import type { SessionStore } from "../sessions/sessions";
import type { Delivery } from "./delivery";
import type { Memberships } from "./membership";
import type { Replies } from "./replies";
import type { RoomSequencer } from "./sequencer";

export interface ChatDeps {
  config: Readonly<Config>;
  registry: ConnectionRegistry;
  rooms: RoomManager;
  history: HistoryStore;
  reads: ReadPositionStore;
  inbox: InboxStore;
  presence: PresenceStore;
  sessions: SessionStore;
  backplane: Backplane;
  /** This instance's sockets: native publish, and joined frames for batched connections. */
  local: FrameBatcher;
  metrics: Metrics;
  logger: Logger;
  /** Verifies tokens of `auth` frames; undefined when no JWT secret or JWKS is configured. */
  authenticator?: Authenticator;
  now?: () => number;
}

/** What every frame handler works with: the dependencies and the chat's shared parts. */
export interface ChatContext {
  readonly deps: ChatDeps;
  readonly now: () => number;
  /** Orders room messages from every instance; its last offset is what members here have been sent. */
  readonly sequencer: RoomSequencer;
  readonly delivery: Delivery;
  readonly memberships: Memberships;
  readonly replies: Replies;
}
