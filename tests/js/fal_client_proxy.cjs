// Drive the unmodified @fal-ai/client (1.10.1) against fal_realtime.proxy and the local gateway.
//
//   node --experimental-websocket fal_client_proxy.cjs SCENARIO
//
// Environment: PROXY (the proxy's prefix URL, e.g. http://127.0.0.1:PORT/api/fal) and
// GATEWAY (host:port of the gateway, serving TLS with a CA given in NODE_EXTRA_CA_CERTS).
// fal's client always opens wss://fal.run/...; the one thing this harness changes is
// where that name leads, as a hosts-file entry would: the WebSocket class it finds
// connects to GATEWAY instead of fal.run. Nothing in the client is patched.
//
// Prints one JSON line, {"results": [...], "errors": [...], "tokenApps": [...], ...},
// and exits 0; exits 1 with a message on stderr when the scenario fails or stalls.
"use strict";

const { fal } = require("@fal-ai/client");

const PROXY = process.env.PROXY;
const GATEWAY = process.env.GATEWAY;
const DEADLINE_MS = 20000;

const NativeWebSocket = globalThis.WebSocket;
const opened = [];
globalThis.WebSocket = class extends NativeWebSocket {
  constructor(url, protocols) {
    const where = String(url).replace(/^wss:\/\/fal\.run\//, `wss://${GATEWAY}/`);
    opened.push(String(url).replace(/fal_jwt_token=[^&]+/, "fal_jwt_token=***"));
    super(where, protocols);
  }
};

function fail(message) {
  process.stderr.write(`fal_client_proxy: ${message}\n`);
  process.exit(1);
}

setTimeout(() => fail(`no outcome within ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

function realtimeOnce(handler) {
  // Send one input, wait for its result, close: returns what arrived.
  return new Promise((resolve) => {
    const errors = [];
    const connection = fal.realtime.connect("fal-ai/echo", {
      throttleInterval: 0,
      ...handler,
      onResult(result) {
        connection.close();
        resolve({ results: [result], errors });
      },
      onError(error) {
        errors.push(String(error && error.message));
        fail(`onError: ${error && error.message}`);
      },
    });
    connection.send({ prompt: "hi from node", n: 2 });
  });
}

async function main() {
  const scenario = process.argv[2];
  const tokenApps = [];
  let outcome;
  if (scenario === "proxy-realtime") {
    // fal's demos: the token is fetched through the proxy (rest.fal.ai/tokens/).
    fal.config({ proxyUrl: { url: `${PROXY}/proxy`, when: "always" } });
    outcome = await realtimeOnce({});
  } else if (scenario === "token-provider") {
    // The recommended way since 1.10: tokenProvider calls the backend's token route.
    outcome = await realtimeOnce({
      tokenExpirationSeconds: 120,
      async tokenProvider(app) {
        tokenApps.push(app);
        const response = await fetch(`${PROXY}/token?app=${encodeURIComponent(app)}`);
        if (!response.ok) throw new Error(`token route answered ${response.status}`);
        return (await response.json()).token;
      },
    });
  } else if (scenario === "stream") {
    fal.config({ proxyUrl: { url: `${PROXY}/proxy`, when: "always" } });
    const stream = await fal.stream("fal-ai/any-llm", {
      input: { prompt: "Respond in 12 words." },
    });
    const events = [];
    for await (const event of stream) events.push(event);
    const done = await stream.done();
    const run = await fal.run("fal-ai/any-llm", { input: { prompt: "Respond in 3 words." } });
    outcome = { results: events, done, run: run.data, requestId: run.requestId, errors: [] };
  } else {
    fail(`unknown scenario ${scenario}`);
  }
  process.stdout.write(JSON.stringify({ ...outcome, tokenApps, opened }) + "\n");
  process.exit(0);
}

main().catch((error) => fail(error && error.stack ? error.stack : String(error)));
