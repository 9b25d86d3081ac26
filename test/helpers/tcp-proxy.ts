import { type AddressInfo, type Server, type Socket, createServer, connect } from "node:net";

/**
 * A tiny TCP proxy on 127.0.0.1 in front of PostgreSQL, so a test can take "the database"
 * away from its own connections only: `cut()` destroys every proxied connection and
 * resets new ones at once (what clients see when PostgreSQL restarts), `restore()` lets
 * connections through again. Parallel tests, which talk to PostgreSQL directly, are not
 * affected.
 */
export interface TcpProxy {
  readonly port: number;
  /** `url` with its host and port replaced by the proxy's. */
  urlFor(url: string): string;
  /** Destroys every open connection and refuses new ones until restore(). */
  cut(): void;
  /**
   * Every connection open now goes silent: nothing more passes either way and nothing is
   * closed or reset, as on a network partition or a stuck middlebox. New connections pass.
   */
  silence(): void;
  restore(): void;
  readonly isCut: boolean;
  /** Connections currently open through the proxy. */
  readonly openConnections: number;
  /** Connections accepted while cut (each one reset at once): how hard clients retried. */
  readonly refusedWhileCut: number;
  close(): Promise<void>;
}

/** In front of the server DATABASE_URL names (see server.ts) unless told otherwise. */
/** `target`: the test server (testServerAddress() in helpers/db.ts, which knows an embedded one). */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  /** Pairs still forwarding: silence() stops these and forgets them. */
  const silenceable = new Set<[Socket, Socket]>();
  let cut = false;
  let refused = 0;
  const server: Server = createServer((client) => {
    if (cut) {
      refused++;
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const close = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    // Either side closing or failing closes both: a client must see its server go away.
    for (const socket of pair) {
      socket.on("error", close);
      socket.on("close", close);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    silenceable.add(pair);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    urlFor(url: string): string {
      const parsed = new URL(url);
      parsed.hostname = "127.0.0.1";
      parsed.port = String(port);
      return parsed.href;
    },
    cut(): void {
      cut = true;
      for (const [client, upstream] of [...pairs]) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    restore(): void {
      cut = false;
    },
    silence(): void {
      for (const [client, upstream] of silenceable) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
      silenceable.clear();
    },
    get isCut() {
      return cut;
    },
    get openConnections() {
      return pairs.size;
    },
    get refusedWhileCut() {
      return refused;
    },
    async close(): Promise<void> {
      cut = true;
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
