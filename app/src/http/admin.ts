import { Elysia, t } from "elysia";
import type { ChatService } from "../chat/service";
import type { PresenceStore } from "../presence/presence";
import { ROOM_PATTERN } from "../protocol/client-frames";
import { jsonError } from "./errors";
import { hasBearer } from "./net";

/** Operator routes behind `Authorization: Bearer ADMIN_TOKEN`; without a token they do not exist (404). */
export function adminRoutes(deps: {
  adminToken: string;
  maxTextLength: number;
  chat: ChatService;
  presence: PresenceStore;
}) {
  const { adminToken, chat, presence } = deps;
  return new Elysia({ name: "admin", prefix: "/admin" })
    .onBeforeHandle(({ request }) => {
      if (!adminToken) return jsonError(404, "not_found", "admin routes are disabled; set ADMIN_TOKEN to enable them");
      if (!hasBearer(request.headers.get("authorization"), adminToken)) {
        return jsonError(401, "unauthorized", "a valid admin bearer token is required", {
          "www-authenticate": "Bearer",
        });
      }
    })
    .post(
      "/broadcast",
      ({ body }) => {
        chat.broadcast(body.text);
        return { ok: true };
      },
      { body: t.Object({ text: t.String({ minLength: 1, maxLength: deps.maxTextLength }) }) },
    )
    .get("/presence/:room", async ({ params }) => {
      if (!new RegExp(ROOM_PATTERN).test(params.room))
        return jsonError(400, "invalid_room", "room must be 1-64 characters of A-Z a-z 0-9 _ : . -");
      return { room: params.room, members: await presence.members(params.room) };
    });
}
