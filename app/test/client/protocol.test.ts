// The client package carries its own copy of the protocol's codes (it may not depend on the server's
// source): the copy must say what the server does.
import { expect, test } from "bun:test";
import { CloseCode, ErrorCode, RECONNECTABLE_CLOSE_CODES } from "../../client/index";
import * as server from "../../src/protocol/codes";

test("the client's error codes are the server's", () => {
  expect(ErrorCode).toEqual(server.ErrorCode);
});

test("the client's close codes are the server's, plus 1006 which only a WebSocket reports", () => {
  expect(CloseCode).toEqual({ ...server.CloseCode, Abnormal: 1006 });
  expect([...RECONNECTABLE_CLOSE_CODES].sort()).toEqual([...server.RECONNECTABLE_CLOSE_CODES].sort());
});
