/** Where a Redis Cluster is and how to log in to its nodes (REDIS_CLUSTER_NODES). */
export interface ClusterTarget {
  /** Seed nodes: any reachable one tells the client the whole topology. */
  nodes: { host: string; port: number }[];
  username: string;
  password: string;
  /** rediss:// entries: every node, the discovered ones too, is reached over TLS. */
  tls: boolean;
}

/** What REDIS_CLUSTER_NODES accepts, as its config error says. */
export const CLUSTER_NODES_ACCEPTS = "comma-separated host:port seed nodes, or redis:// or rediss:// URLs";

/**
 * Parses comma-separated seed nodes: `host:port`, or URLs (`redis://user:password@host:port`,
 * `rediss://` for TLS) whose scheme and credentials apply to every node of the cluster. URL entries
 * must agree on them (every node of a cluster takes the same login). Throws an Error saying what it
 * expected, without the value (it may hold a password).
 */
export function parseClusterNodes(raw: string): ClusterTarget {
  const target: ClusterTarget = { nodes: [], username: "", password: "", tls: false };
  let login: string | undefined;
  for (const entry of raw.split(",").map((e) => e.trim())) {
    if (entry === "") throw new Error(CLUSTER_NODES_ACCEPTS);
    const url = parseEntry(entry);
    const port = Number(url.port || "6379");
    if (!url.hostname || !Number.isInteger(port) || port < 1 || port > 65_535 || (url.pathname && url.pathname !== "/"))
      throw new Error(CLUSTER_NODES_ACCEPTS);
    target.nodes.push({ host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port });
    if (!entry.includes("://")) continue;
    const entryLogin = `${url.protocol}|${url.username}|${url.password}`;
    if (login !== undefined && login !== entryLogin)
      throw new Error("the same scheme, user and password in every URL entry");
    login = entryLogin;
    target.tls = url.protocol === "rediss:";
    target.username = decodeURIComponent(url.username);
    target.password = decodeURIComponent(url.password);
  }
  return target;
}

function parseEntry(entry: string): URL {
  try {
    const url = new URL(entry.includes("://") ? entry : `redis://${entry}`);
    if (url.protocol !== "redis:" && url.protocol !== "rediss:") throw new Error();
    return url;
  } catch {
    throw new Error(CLUSTER_NODES_ACCEPTS);
  }
}

/** Entries for an error message, without their passwords. */
export function redactEntry(entry: string): string {
  return entry.replace(/\/\/([^:@/,]*):[^@/,]*@/g, "//$1:***@");
}
