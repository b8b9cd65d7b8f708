// The Grafana provisioning and dashboard files: what Grafana needs to load them and what links them
// together (stable uids, the provisioned datasource uid). Their queries are checked against live
// data in dashboards-live.test.ts.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { DASHBOARDS_DIR, GRAFANA_DIR } from "./paths";

const datasources = parse(readFileSync(join(GRAFANA_DIR, "provisioning", "datasources", "prometheus.yml"), "utf8"));
const providers = parse(readFileSync(join(GRAFANA_DIR, "provisioning", "dashboards", "dashboards.yml"), "utf8"));
const files = [...new Bun.Glob("*.json").scanSync({ cwd: DASHBOARDS_DIR })].sort();
const dashboards = files.map((f) => ({ file: f, json: JSON.parse(readFileSync(join(DASHBOARDS_DIR, f), "utf8")) }));

describe("grafana provisioning", () => {
  test("one Prometheus datasource with a fixed uid", () => {
    expect(datasources.apiVersion).toBe(1);
    expect(datasources.datasources).toHaveLength(1);
    expect(datasources.datasources[0]).toMatchObject({
      uid: "prometheus",
      type: "prometheus",
      url: "http://prometheus:9090",
      isDefault: true,
    });
  });

  test("a file provider reading the mounted dashboards directory", () => {
    expect(providers.apiVersion).toBe(1);
    expect(providers.providers).toHaveLength(1);
    expect(providers.providers[0]).toMatchObject({ type: "file", options: { path: "/var/lib/grafana/dashboards" } });
  });
});

describe("dashboards", () => {
  test("the three dashboards keep their uids", () => {
    expect(dashboards.map((d) => [d.file, d.json.uid])).toEqual([
      ["deploys.json", "realtime-deploys"],
      ["realtime-overview.json", "realtime-overview"],
      ["traefik.json", "realtime-traefik"],
    ]);
  });

  for (const { file, json } of dashboards) {
    test(`${file}: every panel and query uses the provisioned datasource; panel ids are unique`, () => {
      const refs: unknown[] = [];
      const walk = (node: any) => {
        if (Array.isArray(node)) return node.forEach(walk);
        if (!node || typeof node !== "object") return;
        if (node.datasource && node.datasource.type !== "grafana") refs.push(node.datasource);
        Object.values(node).forEach(walk);
      };
      walk(json.panels);
      walk(json.annotations);
      walk(json.templating);
      expect(refs.length).toBeGreaterThan(0);
      for (const ref of refs) expect(ref).toEqual({ type: "prometheus", uid: datasources.datasources[0].uid });
      const ids = json.panels.map((p: { id: number }) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const p of json.panels) {
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
        if (p.type !== "row") expect(p.targets.length).toBeGreaterThan(0);
      }
    });
  }
});
