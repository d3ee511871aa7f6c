// Record the bytes fal's JavaScript client sends for one camera-demo input (GW-MEDIA-14).
//
// fal's client (@fal-ai/client 1.10.1, src/realtime.js) encodes every realtime input with
// @msgpack/msgpack's encode(); fal's camera demo (apps/demo-nextjs-app-router) sends
// {prompt, image_bytes: Uint8Array, strength, seed, num_inference_steps, sync_mode}.
//
//   npm install --no-save @msgpack/msgpack@3
//   node tests/data/record_fal_js_camera_input.mjs FRAME.jpg tests/data/fal_js_camera_input.msgpack
//
// It also decodes OUTPUT.msgpack (a gateway answer) when given as a third argument and
// prints the JavaScript types of its fields, as the demo reads them.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.cwd() + "/");
const { encode, decode } = require("@msgpack/msgpack");
const [frame, out, answer] = process.argv.slice(2);
const input = {
  prompt: "a moonlit forest, oil painting",
  image_bytes: new Uint8Array(readFileSync(frame)),
  strength: 0.6,
  seed: 42,
  num_inference_steps: 2,
  sync_mode: true,
};
writeFileSync(out, encode(input));
if (answer) {
  const result = decode(readFileSync(answer));
  const image = result.images[0];
  console.log(JSON.stringify({
    content: image.content instanceof Uint8Array ? "Uint8Array" : typeof image.content,
    width: typeof image.width, height: typeof image.height,
    content_type: typeof image.content_type, seed: typeof result.seed,
    num_inference_steps: typeof result.num_inference_steps,
    request_id: typeof result.request_id, timings: typeof result.timings,
    nsfw_content_detected: Array.isArray(result.nsfw_content_detected),
  }));
}
