// process_memory_limit_bytes comes from the cgroup files the kernel writes; a reader stands in for
// /sys/fs/cgroup so each layout can be checked on any machine.
import { expect, test } from "bun:test";
import { cgroupMemoryLimit } from "../../src/observability/metrics";

const files = (entries: Record<string, string>) => (path: string) => {
  const text = entries[path];
  if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
  return text;
};

test("cgroup v2: the bytes of memory.max, or no limit for max", () => {
  expect(cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory.max": "1073741824\n" }))).toBe(1073741824);
  expect(cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory.max": "max\n" }))).toBeUndefined();
});

test("cgroup v1: memory.limit_in_bytes, where a number near 2^63 means no limit", () => {
  const v1 = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
  expect(cgroupMemoryLimit(files({ [v1]: "536870912\n" }))).toBe(536870912);
  expect(cgroupMemoryLimit(files({ [v1]: "9223372036854771712\n" }))).toBeUndefined();
});

test("no cgroup files: no limit", () => {
  expect(cgroupMemoryLimit(files({}))).toBeUndefined();
});
