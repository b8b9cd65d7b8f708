import { randomUUIDv7 } from "bun";
import type { Connection } from "../../connections/connection";
import type { FrameOf } from "../../protocol/client-frames";
import { frames } from "../../protocol/server-frames";
import { userTopic } from "../../rooms/topics";
import type { ChatContext } from "../context";
import { stillProcessing } from "../replies";

/** A message to one user's connections on every instance, and to the sender's other tabs. */
export async function direct(chat: ChatContext, connection: Connection, frame: FrameOf<"direct">) {
  const { to, text, clientMsgId } = frame;
  const answer = await once(chat, connection, clientMsgId, "direct", frame.ref, async () => {
    const direct = { id: randomUUIDv7(), from: connection.userId, to, text, ts: chat.now(), clientMsgId };
    const payload = frames.direct(direct);
    chat.delivery.publish(userTopic(to), payload, "direct");
    // The sender's other tabs show the conversation too.
    if (to !== connection.userId) chat.delivery.publish(userTopic(connection.userId), payload, "direct");
    return { to, id: direct.id, ts: direct.ts };
  });
  if (answer) chat.replies.respond(connection, "direct", frame.ref, answer);
}

/**
 * Runs `send` once per (user, clientMsgId) within the dedup window, for direct messages (room
 * messages are deduplicated by the history store). A repeat gets the first answer marked
 * `duplicate: true` (and undefined is returned, the answer being sent here).
 */
async function once(
  chat: ChatContext,
  connection: Connection,
  clientMsgId: string,
  forType: string,
  ref: string | undefined,
  send: () => Promise<Record<string, unknown>>,
): Promise<Record<string, unknown> | undefined> {
  const { dedup } = chat.deps;
  // Room messages and direct messages are separate namespaces: reusing an id across them is no repeat.
  const key = `${forType}:${clientMsgId}`;
  const claim = await dedup.claim(connection.userId, key);
  if (!claim.claimed) {
    if (!claim.answer) throw stillProcessing();
    chat.replies.respond(connection, forType, ref, { ...claim.answer, duplicate: true });
    return undefined;
  }
  let answer: Record<string, unknown>;
  try {
    answer = await send();
  } catch (error) {
    await dedup.release(connection.userId, key).catch(() => {});
    throw error;
  }
  await dedup.remember(connection.userId, key, answer);
  return answer;
}
