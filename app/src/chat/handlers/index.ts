import type { Connection } from "../../connections/connection";
import type { ClientFrame } from "../../protocol/client-frames";
import type { ChatContext } from "../context";
import { auth } from "./auth";
import { direct } from "./direct";
import { inbox } from "./inbox";
import { message } from "./messages";
import { history, ping, presence } from "./queries";
import { join, leave } from "./rooms";
import { read, typing } from "./signals";

/** Runs the handler of a validated client frame; a refusal is thrown as a ChatError. */
export function dispatch(chat: ChatContext, connection: Connection, frame: ClientFrame): Promise<void> | void {
  switch (frame.type) {
    case "auth":
      return auth(chat, connection, frame);
    case "join":
      return join(chat, connection, frame);
    case "leave":
      return leave(chat, connection, frame);
    case "message":
      return message(chat, connection, frame);
    case "direct":
      return direct(chat, connection, frame);
    case "inbox":
      return inbox(chat, connection, frame);
    case "typing":
      return typing(chat, connection, frame);
    case "read":
      return read(chat, connection, frame);
    case "history":
      return history(chat, connection, frame);
    case "presence":
      return presence(chat, connection, frame);
    case "ping":
      return ping(chat, connection, frame);
  }
}
