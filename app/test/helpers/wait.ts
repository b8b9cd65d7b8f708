/** Polls a condition until it holds, failing with `what` after the deadline. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  options: { timeoutMs?: number; what?: string } = {},
) {
  const deadline = Date.now() + (options.timeoutMs ?? 3000);
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${options.what ?? "condition"}`);
    await Bun.sleep(10);
  }
}
