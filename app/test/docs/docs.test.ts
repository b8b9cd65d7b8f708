// Keeps the documentation honest: every variable, code, frame, field and metric the code defines
// must be documented, with the same defaults, accepted values and flags, and the README's two
// commands must be the ones the scripts and CI run. The facts come from the code itself (imported,
// or read as text where there is nothing to import), never from a copy kept here.

import { describe, expect, test } from "bun:test";
import { accessSync, constants, existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ConfigError, VARIABLES } from "../../src/config";
import { ClientFrameSchemas } from "../../src/protocol/client-frames";
import { CloseCode, ErrorCode, RECONNECTABLE_CLOSE_CODES, TEMPORARY_ERRORS } from "../../src/protocol/codes";
import { frames, type RoomMessage } from "../../src/protocol/server-frames";

const ROOT = resolve(import.meta.dir, "..", "..", "..");
const SRC = join(ROOT, "app", "src");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");

const readme = read("README.md");
const protocol = read("docs/protocol.md");
const operations = read("docs/operations.md");

/** The text under a heading (the heading line given exactly), up to the next heading of its level or higher. */
function section(markdown: string, heading: string): string {
  const lines = markdown.split("\n");
  const start = lines.findIndex((line) => line.trim() === heading);
  if (start < 0) throw new Error(`heading not found: ${heading}`);
  const level = heading.match(/^#+/)![0].length;
  const end = lines.findIndex((line, i) => {
    if (i <= start) return false;
    const hashes = line.match(/^(#+)\s/);
    return hashes !== null && hashes[1]!.length <= level;
  });
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

/** Body rows of the markdown tables in a text, as trimmed cells (header and separator rows dropped). */
function tableRows(text: string): string[][] {
  const separator = /^\|[\s|:-]+\|$/;
  const lines = text.split("\n").map((line) => line.trim());
  return lines
    .filter((line, i) => line.startsWith("|") && !separator.test(line) && !separator.test(lines[i + 1] ?? ""))
    .map((line) =>
      line
        .slice(1, -1)
        .split("|")
        .map((cell) => cell.trim()),
    );
}

/** Rows keyed by their first cell when it is a single `code span`. */
function rowsByCode(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const cells of tableRows(text)) {
    const key = /^`([^`]+)`$/.exec(cells[0] ?? "")?.[1];
    if (key !== undefined) out.set(key, cells);
  }
  return out;
}

/** Headings of one level inside a text, with backticks removed. */
function headings(text: string, level: number): string[] {
  const prefix = `${"#".repeat(level)} `;
  return text
    .split("\n")
    .filter((line) => line.startsWith(prefix))
    .map((line) => line.slice(prefix.length).replaceAll("`", "").trim());
}

describe("README", () => {
  const quickStart = section(readme, "## Quick start");
  const blocks = [...quickStart.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());

  test("the quick start has exactly one command to run the server and one to run the tests", () => {
    expect(blocks).toEqual(["./scripts/dev.sh", "./scripts/test.sh"]);
  });

  test("both commands exist and are executable", () => {
    for (const script of ["scripts/dev.sh", "scripts/test.sh"]) {
      expect(() => accessSync(join(ROOT, script), constants.X_OK)).not.toThrow();
    }
  });

  test("CI runs the README's test command", () => {
    const commands = read(".ci/run")
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#"));
    expect(commands.some((line) => /(^|\s)\.\/scripts\/test\.sh(\s|$)/.test(line))).toBe(true);
  });

  test("the variables the README names exist, with the defaults config.ts gives them", () => {
    const text = section(readme, "## Configuration") + section(readme, "## Production checklist");
    const named = [...new Set([...text.matchAll(/`([A-Z][A-Z0-9_]{2,})(=[^`]*)?`/g)].map((m) => m[1]!))];
    expect(named.filter((name) => !(name in VARIABLES))).toEqual([]);
    for (const [name, cells] of rowsByCode(section(readme, "## Configuration"))) {
      const variable = VARIABLES[name as keyof typeof VARIABLES];
      if (typeof variable.default !== "string") continue;
      expect({ name, default: cells[1] }).toEqual({
        name,
        default: variable.default === "" ? "(empty)" : `\`${variable.default}\``,
      });
    }
  });

  test("the test page URL printed by the quick start is the one the README gives", () => {
    expect(read("scripts/dev.sh")).toContain("http://localhost:");
    expect(quickStart).toContain(`http://localhost:${VARIABLES.PORT.default}/`);
  });
});

describe("operations.md: environment variables", () => {
  const rows = rowsByCode(section(operations, "## Environment variables"));

  test("the table lists exactly the variables of config.ts", () => {
    expect([...rows.keys()].sort()).toEqual(Object.keys(VARIABLES).sort());
  });

  for (const [name, variable] of Object.entries(VARIABLES)) {
    test(`${name}: default and accepted values match config.ts`, () => {
      const [, documentedDefault, accepted] = rows.get(name) ?? [];
      if (typeof variable.default === "string") {
        expect(documentedDefault).toBe(variable.default === "" ? "(empty)" : `\`${variable.default}\``);
      }
      // An invalid value makes the parser say what it accepts: the same words as the config error.
      let accepts = "any text";
      try {
        (variable.parse as (raw: string, name: string) => unknown)("\u0000?", name);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        accepts = error.accepts;
      }
      expect(accepted).toBe(accepts);
    });
  }

  test("the config error line is documented as the server prints it", () => {
    const example = new ConfigError("PORT", "an integer from 0 to 65535", "http").message;
    expect(operations).toContain(`config error: ${example}`);
    expect(section(operations, "## Configuration errors")).toContain("exit code 2");
  });
});

describe("protocol.md: error codes", () => {
  const rows = rowsByCode(section(protocol, "## Error codes"));

  test("the table lists exactly the error codes of codes.ts", () => {
    expect([...rows.keys()].sort()).toEqual(Object.values(ErrorCode).sort());
  });

  test("`temporary` matches TEMPORARY_ERRORS", () => {
    for (const code of Object.values(ErrorCode)) {
      expect({ code, temporary: rows.get(code)?.[1] }).toEqual({
        code,
        temporary: TEMPORARY_ERRORS.has(code) ? "yes" : "no",
      });
    }
  });
});

describe("protocol.md: close codes", () => {
  const codes = section(protocol, "## Close codes");
  const table = rowsByCode(codes.split("\n### ")[0]!);
  const reconnect = rowsByCode(section(protocol, "### Reconnect after it?"));
  const closeCodes = Object.values(CloseCode).map(String);

  test("every close code of codes.ts is explained, and 1006 too", () => {
    expect([...table.keys()].sort()).toEqual([...new Set([...closeCodes, "1006"])].sort());
  });

  test("the reconnect table matches RECONNECTABLE_CLOSE_CODES", () => {
    const documented = [...reconnect.keys()].sort();
    expect(documented).toEqual([...new Set([...closeCodes, ...[...RECONNECTABLE_CLOSE_CODES].map(String)])].sort());
    for (const code of documented) {
      const expected = RECONNECTABLE_CLOSE_CODES.has(Number(code)) ? "yes" : "no";
      expect({ code, reconnect: reconnect.get(code)?.[1] }).toEqual({ code, reconnect: expected });
    }
  });
});

describe("protocol.md: client frames", () => {
  const clientSection = section(protocol, "## Client frames");

  test("every client frame type has its own section, and no other type does", () => {
    expect(headings(clientSection, 3).sort()).toEqual(Object.keys(ClientFrameSchemas).sort());
  });

  for (const [type, schema] of Object.entries(ClientFrameSchemas)) {
    test(`${type}: every field is documented with whether it is required`, () => {
      const rows = rowsByCode(section(clientSection, `### \`${type}\``));
      const fields = Object.keys(schema.properties);
      const required = new Set<string>(schema.required ?? []);
      expect([...rows.keys()].sort()).toEqual(fields.sort());
      for (const field of fields) {
        expect({ field, required: rows.get(field)?.[2] }).toEqual({
          field,
          required: required.has(field) ? "yes" : "no",
        });
      }
    });
  }
});

describe("protocol.md: server frames", () => {
  const serverSection = section(protocol, "## Server frames");
  const source = readFileSync(join(SRC, "protocol", "server-frames.ts"), "utf8");
  const sourceTypes = [...new Set([...source.matchAll(/"?type"?\s*:\s*"([a-z_]+)"/g)].map((m) => m[1]!))];

  const message: RoomMessage = { room: "r", id: "i", offset: 1, from: "f", text: "t", ts: 1, clientMsgId: "c" };
  // One call per builder, every optional argument given, so each frame shows all of its fields.
  const samples: Record<keyof typeof frames, () => string> = {
    connectionEstablished: () =>
      frames.connectionEstablished({
        connectionId: "c",
        userId: "u",
        instanceId: "i",
        color: "none",
        version: "v",
        heartbeatIntervalMs: 1,
        frameRate: 1,
        frameBurst: 1,
        resumed: false,
        rooms: [],
        batch: { maxFrames: 1, maxBytes: 1 },
      }),
    heartbeat: () => frames.heartbeat(1),
    pong: () => frames.pong(1, "r"),
    response: () => frames.response("join", "r"),
    messageStored: () => frames.messageStored("r", "r", "i", 1, 1),
    error: () => frames.error(ErrorCode.InvalidFrame, "m", "r"),
    goodbye: () => frames.goodbye("shutdown", true, 1),
    message: () => frames.message(message),
    epoch: () => frames.epoch("r", "e", 1),
    direct: () => frames.direct({ id: "i", from: "f", to: "t", text: "t", ts: 1, clientMsgId: "c", offset: 1 }, "e"),
    typing: () => frames.typing("r", "f", true),
    read: () => frames.read("r", "f", 1),
    presence: () => frames.presence("r", ["u"], "r"),
    presenceDiff: () => frames.presenceDiff("r", ["u"], []),
    history: () => frames.history("r", [message], false, "r"),
    system: () => frames.system("t", 1),
  };

  test("the frame types written in server-frames.ts are the ones its builders produce", () => {
    expect(Object.keys(samples).sort()).toEqual(Object.keys(frames).sort());
    const built = Object.values(samples).map((build) => JSON.parse(build()).type as string);
    expect(sourceTypes.sort()).toEqual([...new Set(built)].sort());
  });

  test("every server frame type has its own section, and no other type does", () => {
    expect(headings(serverSection, 3).sort()).toEqual(sourceTypes.sort());
  });

  for (const [builder, build] of Object.entries(samples)) {
    test(`${builder}: every field it sends is documented`, () => {
      const frame = JSON.parse(build()) as Record<string, unknown>;
      const rows = rowsByCode(section(serverSection, `### \`${frame.type}\``));
      for (const field of Object.keys(frame).filter((k) => k !== "type")) {
        expect({ type: frame.type, field, documented: rows.has(field) }).toEqual({
          type: frame.type,
          field,
          documented: true,
        });
      }
    });
  }
});

/** Every .ts file under a directory. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

describe("operations.md: metrics and HTTP answers", () => {
  const sources = sourceFiles(SRC).map((path) => ({ path, text: readFileSync(path, "utf8") }));

  test("every metric the server registers is in the metrics table", () => {
    const names = sources
      .filter((file) => /from "prom-client"/.test(file.text))
      .flatMap((file) => [...file.text.matchAll(/\bname:\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"/g)].map((m) => m[1]!));
    expect(names).toContain("websocket_connections_total");
    const documented = rowsByCode(section(operations, "## Metrics"));
    const missing = names.filter((name) => !documented.has(name));
    expect(missing).toEqual([]);
  });

  test("every HTTP error code the server answers with is documented", () => {
    // A status followed by a code: the arguments of jsonError() and of the helpers that wrap it.
    const codes = sources.flatMap((file) => [...file.text.matchAll(/\b[1-5]\d\d,\s*"([a-z_]+)"/g)].map((m) => m[1]!));
    expect(codes).toContain("over_capacity");
    const missing = [...new Set(codes)].filter(
      (code) => !protocol.includes(`\`${code}\``) && !operations.includes(`\`${code}\``),
    );
    expect(missing).toEqual([]);
  });

  test("every readiness reason is documented", () => {
    const health = readFileSync(join(SRC, "http", "health.ts"), "utf8");
    const reasons = [...health.matchAll(/reason:\s*"([a-z_]+)"/g)].map((m) => m[1]!);
    expect(reasons.length).toBeGreaterThan(0);
    const ready = section(operations, "### `GET /health/ready`");
    expect(reasons.filter((reason) => !ready.includes(`\`${reason}\``))).toEqual([]);
  });
});

/** GitHub's anchor for each heading of a markdown file, numbered when repeated. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    const match = !fenced && /^#{1,6}\s+(.*)$/.exec(line);
    if (!match) continue;
    const slug = match[1]!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

describe("links", () => {
  // Written by other parts of the project; a link to them is checked once they exist.
  const notYetWritten = new Set(["docs/performance.md"]);

  for (const file of ["README.md", "docs/protocol.md", "docs/operations.md"]) {
    test(`${file}: every relative link leads to an existing file and heading`, () => {
      const text = read(file);
      const broken: string[] = [];
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const [path, anchor] = target!.split("#") as [string, string | undefined];
        const targetPath = path === "" ? join(ROOT, file) : resolve(dirname(join(ROOT, file)), path);
        const name = relative(ROOT, targetPath);
        if (!existsSync(targetPath)) {
          if (!notYetWritten.has(name)) broken.push(target!);
          continue;
        }
        if (anchor && !anchors(readFileSync(targetPath, "utf8")).has(anchor)) broken.push(target!);
      }
      expect(broken).toEqual([]);
    });
  }
});
