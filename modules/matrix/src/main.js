#!/usr/bin/env node
// Entry point of the matrix module (started by call-assistant as
// call-assistant-module@matrix.service; see module.yaml).

import { ModuleRuntime, log } from '../runtime/module-runtime.js';

import { INFO, MatrixModule } from './matrix-module.js';

log.setDebug(process.argv.includes('--debug'));
const mod = new MatrixModule();
let rt;
try {
  rt = new ModuleRuntime(INFO, mod.handlers());
} catch (e) {
  log.error(e.message);
  process.exit(2);
}
mod.rt = rt;
process.on('unhandledRejection', (e) => log.error('unhandled rejection:', e));
rt.run().then(() => process.exit(0), (e) => {
  log.error(e.message);
  process.exit(1);
});
