// Bundle remote-party.js (with matrix-js-sdk) for the browser: OUTFILE.
// usage: node build-bundle.js OUTFILE DIR   (DIR/node_modules has esbuild and matrix-js-sdk)
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [outfile, dir] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const esbuild = await import(path.join(dir, 'node_modules', 'esbuild', 'lib', 'main.js'));
await (esbuild.default || esbuild).build({
  entryPoints: [path.join(here, 'remote-party.js')],
  nodePaths: [path.join(dir, 'node_modules')],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'chrome120',
  // End-to-end encryption is not used by these tests: leave the crypto WebAssembly out.
  external: ['@matrix-org/matrix-sdk-crypto-wasm'],
  outfile,
  logLevel: 'warning',
});
